//! The placement algorithms by name ([`Algorithm`]), their settings
//! ([`PlacementSpec`]) and the documented bounds every spec is checked
//! against ([`PlacementSpec::validate`]) before anything is built from it:
//! the CLI, the page's URL and pickers, and the backend's REST and
//! WebSocket administration all go through this one list and this one check.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::maglev;

/// Virtual nodes per unit of weight (ring, bounded). Each member costs this
/// many points, so the bound keeps a ring of thousands of nodes in memory.
pub const VNODES: RangeInclusive<u32> = 1..=1000;
/// Maglev's table size (rounded up to a prime; both ends are prime). The
/// table is built per membership, so the bound keeps that build well under
/// a second; the paper's rule of thumb (M > 100 x nodes) holds to 10,000 nodes.
pub const TABLE_SIZE: RangeInclusive<u64> = 7..=1_000_003;
/// Bounded loads' capacity factor c (no member holds more than c x the mean).
pub const CAPACITY: RangeInclusive<f64> = 1.0..=10.0;
/// A member's relative weight (the page's what-if re-weighting).
pub const WEIGHT: RangeInclusive<u32> = 1..=100;

/// The six algorithms, in the order the page shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    Modulo,
    Ring,
    Rendezvous,
    Jump,
    Maglev,
    Bounded,
}

impl Algorithm {
    /// Every algorithm, in the order the page shows them.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Modulo,
        Algorithm::Ring,
        Algorithm::Rendezvous,
        Algorithm::Jump,
        Algorithm::Maglev,
        Algorithm::Bounded,
    ];

    /// The name on the command line, in URLs and in the wire's `algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Modulo => "modulo",
            Algorithm::Ring => "ring",
            Algorithm::Rendezvous => "rendezvous",
            Algorithm::Jump => "jump",
            Algorithm::Maglev => "maglev",
            Algorithm::Bounded => "bounded",
        }
    }

    /// The spec for this algorithm with `settings` (each algorithm takes the
    /// settings it has and ignores the rest).
    pub fn spec(self, settings: Settings) -> PlacementSpec {
        let Settings { vnodes, table_size, capacity } = settings;
        match self {
            Algorithm::Modulo => PlacementSpec::Modulo,
            Algorithm::Ring => PlacementSpec::Ring { vnodes },
            Algorithm::Rendezvous => PlacementSpec::Rendezvous,
            Algorithm::Jump => PlacementSpec::Jump,
            Algorithm::Maglev => PlacementSpec::Maglev { table_size },
            Algorithm::Bounded => PlacementSpec::Bounded { vnodes, capacity },
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = SpecError;

    fn from_str(name: &str) -> Result<Self, SpecError> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| SpecError {
            field: "algorithm",
            message: format!("unknown algorithm {name:?} (one of {})", Algorithm::ALL.map(Algorithm::name).join(", ")),
        })
    }
}

/// Every algorithm's tunable settings in one place (the CLI's flags, the
/// page's inputs and URL), each algorithm reading its own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub vnodes: u32,
    pub table_size: u64,
    pub capacity: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { vnodes: 160, table_size: maglev::DEFAULT_TABLE_SIZE, capacity: 1.25 }
    }
}

/// The algorithm and its settings, as chosen at `shardscope serve` and sent to
/// the page so it can rebuild the very same placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum PlacementSpec {
    /// `hash % N` over the members (weight = number of slots).
    Modulo,
    /// Consistent hashing with `vnodes` virtual nodes per unit of weight.
    Ring { vnodes: u32 },
    /// Highest random weight: every member scores the key, the highest wins.
    Rendezvous,
    /// Lamping & Veach jump consistent hash over stable buckets.
    Jump,
    /// Maglev lookup table of prime size `table_size`.
    Maglev { table_size: u64 },
    /// Consistent hashing with bounded loads: no member holds more than
    /// `capacity` x the mean.
    Bounded { vnodes: u32, capacity: f64 },
}

impl Default for PlacementSpec {
    fn default() -> Self {
        Algorithm::Ring.spec(Settings::default())
    }
}

/// A setting outside its documented bounds, naming the field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The JSON field (`vnodes`, `table_size`, `capacity`, `algorithm`).
    pub field: &'static str,
    pub message: String,
}

impl PlacementSpec {
    /// The algorithm this spec configures.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PlacementSpec::Modulo => Algorithm::Modulo,
            PlacementSpec::Ring { .. } => Algorithm::Ring,
            PlacementSpec::Rendezvous => Algorithm::Rendezvous,
            PlacementSpec::Jump => Algorithm::Jump,
            PlacementSpec::Maglev { .. } => Algorithm::Maglev,
            PlacementSpec::Bounded { .. } => Algorithm::Bounded,
        }
    }

    /// The algorithm's name, as on the command line.
    pub fn name(&self) -> &'static str {
        self.algorithm().name()
    }

    /// Every algorithm with its default settings, in the order the page shows them.
    pub fn all_defaults() -> Vec<PlacementSpec> {
        Algorithm::ALL.map(|a| a.spec(Settings::default())).to_vec()
    }

    /// Checks every setting against its bound ([`VNODES`], [`TABLE_SIZE`],
    /// [`CAPACITY`]); a spec that passes builds in bounded time and memory.
    pub fn validate(&self) -> Result<(), SpecError> {
        match *self {
            PlacementSpec::Modulo | PlacementSpec::Rendezvous | PlacementSpec::Jump => Ok(()),
            PlacementSpec::Ring { vnodes } => within("vnodes", vnodes, &VNODES),
            PlacementSpec::Maglev { table_size } => within("table_size", table_size, &TABLE_SIZE),
            PlacementSpec::Bounded { vnodes, capacity } => {
                within("vnodes", vnodes, &VNODES)?;
                within("capacity", capacity, &CAPACITY)
            }
        }
    }
}

/// `value` inside `range`, else the error naming `field` and the bounds (a
/// NaN is outside every range).
fn within<T: PartialOrd + fmt::Display>(
    field: &'static str,
    value: T,
    range: &RangeInclusive<T>,
) -> Result<(), SpecError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(SpecError { field, message: format!("must be {} to {}, got {value}", range.start(), range.end()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_wire_tag() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
            let spec = a.spec(Settings::default());
            assert_eq!(spec.algorithm(), a);
            let json = serde_json::to_value(&spec).unwrap();
            assert_eq!(json["algorithm"], a.name());
            assert_eq!(serde_json::to_value(a).unwrap(), a.name());
        }
        let err = "consistent".parse::<Algorithm>().unwrap_err();
        assert_eq!(err.field, "algorithm");
        assert!(err.message.contains("modulo, ring, rendezvous, jump, maglev, bounded"), "{err}");
    }

    #[test]
    fn defaults_are_valid_and_the_bounds_are_prime_for_maglev() {
        for spec in PlacementSpec::all_defaults() {
            spec.validate().unwrap();
        }
        assert_eq!(maglev::next_prime(*TABLE_SIZE.start()), *TABLE_SIZE.start());
        assert_eq!(maglev::next_prime(*TABLE_SIZE.end()), *TABLE_SIZE.end());
    }

    #[test]
    fn out_of_range_settings_name_their_field() {
        let cases = [
            (r#"{"algorithm":"maglev","table_size":1000000000000}"#, "table_size"),
            (r#"{"algorithm":"maglev","table_size":0}"#, "table_size"),
            (r#"{"algorithm":"ring","vnodes":0}"#, "vnodes"),
            (r#"{"algorithm":"ring","vnodes":4294967295}"#, "vnodes"),
            (r#"{"algorithm":"bounded","vnodes":0,"capacity":1.25}"#, "vnodes"),
            (r#"{"algorithm":"bounded","vnodes":160,"capacity":0.5}"#, "capacity"),
            (r#"{"algorithm":"bounded","vnodes":160,"capacity":1e300}"#, "capacity"),
        ];
        for (json, field) in cases {
            let spec: PlacementSpec = serde_json::from_str(json).unwrap();
            let err = spec.validate().unwrap_err();
            assert_eq!(err.field, field, "{json}");
            assert!(err.to_string().starts_with(&format!("{field}: must be ")), "{err}");
        }
        let nan = PlacementSpec::Bounded { vnodes: 160, capacity: f64::NAN };
        assert_eq!(nan.validate().unwrap_err().field, "capacity");
        for edge in [
            PlacementSpec::Ring { vnodes: 1 },
            PlacementSpec::Ring { vnodes: 1000 },
            PlacementSpec::Maglev { table_size: 7 },
            PlacementSpec::Maglev { table_size: 1_000_003 },
            PlacementSpec::Bounded { vnodes: 1, capacity: 1.0 },
            PlacementSpec::Bounded { vnodes: 1000, capacity: 10.0 },
        ] {
            edge.validate().unwrap();
        }
    }
}
