//! Versions of writes, and the hybrid logical clock that hands them out.
//!
//! Every write to a key carries a [`Version`]: a hybrid logical clock reading
//! (physical milliseconds in the high 48 bits, a logical counter in the low
//! 16) and the id of the writer that took it. Versions are totally ordered,
//! so wherever two copies of a key meet (a rebalance copy, a read of two
//! owners) the newer one wins, whichever side it comes from. The gateway
//! versions client writes; a node versions the seeds' plain `PUT`s itself.
//!
//! A [`Clock`] never goes backwards and never hands out the same reading
//! twice: each reading is above the last one and above every version it has
//! [`observed`](Clock::observe), even if the wall clock steps back.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Bits of a clock reading below the milliseconds: the logical counter.
const LOGICAL_BITS: u32 = 16;

/// The version of one write. On the wire: `[hlc, writer]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "(u64, u32)", into = "(u64, u32)")]
pub struct Version {
    /// Hybrid logical clock reading: `millis << 16 | logical`.
    pub hlc: u64,
    /// Who took the reading (breaks ties between writers).
    pub writer: u32,
}

/// How far ahead of the local wall clock a version may be. Clocks of one
/// cluster's machines disagree by far less; a version further ahead is
/// forged or comes from a broken clock, and nodes refuse it.
pub const MAX_AHEAD_MILLIS: u64 = 60 * 60 * 1000;

impl Version {
    /// At most [`MAX_AHEAD_MILLIS`] ahead of `wall_millis`.
    pub fn plausible(&self, wall_millis: u64) -> bool {
        self.millis() <= wall_millis.saturating_add(MAX_AHEAD_MILLIS)
    }

    /// The wall-clock milliseconds (since the Unix epoch) of the reading.
    pub fn millis(&self) -> u64 {
        self.hlc >> LOGICAL_BITS
    }
}

impl From<(u64, u32)> for Version {
    fn from((hlc, writer): (u64, u32)) -> Self {
        Version { hlc, writer }
    }
}

impl From<Version> for (u64, u32) {
    fn from(v: Version) -> Self {
        (v.hlc, v.writer)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.hlc, self.writer)
    }
}

/// A hybrid logical clock owned by one writer.
#[derive(Debug)]
pub struct Clock {
    last: AtomicU64,
    writer: u32,
}

impl Clock {
    pub fn new(writer: u32) -> Self {
        Clock { last: AtomicU64::new(0), writer }
    }

    pub fn writer(&self) -> u32 {
        self.writer
    }

    /// A new version, above every earlier reading and observed version:
    /// the wall clock's `wall_millis` when it is ahead, else one more.
    pub fn tick(&self, wall_millis: u64) -> Version {
        let physical = wall_millis.saturating_mul(1 << LOGICAL_BITS);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = physical.max(last.saturating_add(1));
            match self.last.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Version { hlc: next, writer: self.writer },
                Err(seen) => last = seen,
            }
        }
    }

    /// Takes note of a version seen elsewhere: later readings are above it.
    /// A version more than [`MAX_AHEAD_MILLIS`] ahead of the wall clock (a
    /// forged one, or a broken clock's) moves the clock only that far, so
    /// no reading saturates and no two readings are ever the same.
    pub fn observe(&self, v: Version) {
        #[cfg(not(target_arch = "wasm32"))]
        let hlc = v.hlc.min((wall_millis().saturating_add(MAX_AHEAD_MILLIS) << LOGICAL_BITS) | 0xffff);
        #[cfg(target_arch = "wasm32")]
        let hlc = v.hlc;
        self.last.fetch_max(hlc, Ordering::AcqRel);
    }

    /// The highest reading taken or observed so far.
    pub fn latest(&self) -> Version {
        Version { hlc: self.last.load(Ordering::Acquire), writer: self.writer }
    }
}

/// Milliseconds since the Unix epoch, by this machine's clock.
#[cfg(not(target_arch = "wasm32"))]
pub fn wall_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_only_go_up_even_when_the_wall_clock_steps_back() {
        let clock = Clock::new(7);
        let a = clock.tick(1_000);
        let b = clock.tick(1_000);
        let c = clock.tick(900);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a.millis(), 1_000);
        let d = clock.tick(2_000);
        assert_eq!((d.millis(), d.hlc & 0xffff), (2_000, 0));
    }

    #[test]
    fn observed_versions_are_passed() {
        let clock = Clock::new(1);
        let far = Version { hlc: 5_000 << 16, writer: 9 };
        clock.observe(far);
        assert!(clock.tick(1_000) > far);
        assert!(clock.latest().hlc > far.hlc);
    }

    #[test]
    fn a_forged_version_moves_the_clock_only_so_far_and_readings_stay_distinct() {
        let clock = Clock::new(1);
        clock.observe(Version { hlc: u64::MAX, writer: u32::MAX });
        let now = wall_millis();
        let a = clock.tick(now);
        let b = clock.tick(now);
        assert!(a < b, "{a} {b}");
        assert!(a.millis() <= now + MAX_AHEAD_MILLIS + 1 && a.plausible(now + 1), "{a}");
        assert!(!Version { hlc: u64::MAX, writer: 0 }.plausible(now));
    }

    #[test]
    fn order_is_reading_then_writer_and_the_wire_form_is_a_pair() {
        let a = Version { hlc: 10, writer: 9 };
        let b = Version { hlc: 11, writer: 1 };
        let c = Version { hlc: 11, writer: 2 };
        assert!(a < b && b < c);
        assert_eq!(serde_json::to_string(&c).unwrap(), "[11,2]");
        assert_eq!(serde_json::from_str::<Version>("[11,2]").unwrap(), c);
    }
}
