//! Which drawn keys a change moves (their owner differs under the placement
//! before it), and how many of them have travelled so far.

use shardscope_shared::placement::{Member, Placement};

/// A drawn key whose owner changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// Its index among the drawn keys.
    pub key: usize,
    /// Its owner before, an index into the earlier placement's members.
    pub from: usize,
    /// Its owner now, an index into `now`.
    pub to: usize,
}

/// The keys among `sorted` (by hash, with `owners`, their owners' indices
/// into `now`) whose owner under `was` is another node (by id), in hash
/// order; as `shared`'s `analysis::moved_keys`, keys without an owner on
/// either side do not move.
pub fn moving(sorted: &[u64], owners: &[Option<usize>], now: &[Member], was: &dyn Placement) -> Vec<Move> {
    let was_now: Vec<Option<usize>> = was.members().iter().map(|m| now.iter().position(|n| n.id == m.id)).collect();
    sorted
        .iter()
        .zip(owners)
        .enumerate()
        .filter_map(|(key, (&h, &to))| {
            let (from, to) = (was.owner_index(h)?, to?);
            (was_now[from] != Some(to)).then_some(Move { key, from, to })
        })
        .collect()
}

/// How many of `moving` keys have travelled when `fraction` of the change
/// is done: ceil(fraction x moving), none before it starts (or for NaN),
/// all from 1 on.
pub fn travelled_count(moving: usize, fraction: f64) -> usize {
    if fraction.is_nan() || fraction <= 0.0 {
        return 0;
    }
    ((fraction.min(1.0) * moving as f64).ceil() as usize).min(moving)
}

/// The moving keys (in hash order) split into those that have travelled,
/// the first [`travelled_count`], and those still at their old owner.
pub fn split(moves: &[Move], fraction: f64) -> (&[Move], &[Move]) {
    moves.split_at(travelled_count(moves.len(), fraction))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardscope_shared::hash::key_hash;
    use shardscope_shared::placement::analysis::moved_keys;
    use shardscope_shared::placement::{build, PlacementSpec};

    #[test]
    fn travelled_is_ceil_of_the_fraction_and_bounded() {
        assert_eq!(travelled_count(5, 0.0), 0);
        assert_eq!(travelled_count(5, 0.01), 1);
        assert_eq!(travelled_count(5, 0.4), 2);
        assert_eq!(travelled_count(5, 0.41), 3);
        assert_eq!(travelled_count(5, 1.0), 5);
        assert_eq!(travelled_count(5, 7.0), 5);
        assert_eq!(travelled_count(5, f64::INFINITY), 5);
        assert_eq!(travelled_count(5, f64::NAN), 0);
        assert_eq!(travelled_count(5, -1.0), 0);
        assert_eq!(travelled_count(0, 0.5), 0);
    }

    #[test]
    fn the_first_ceil_fraction_of_moving_keys_in_hash_order_have_travelled() {
        let members = |n: usize| (1..=n).map(|i| Member::new(format!("node-{i}"))).collect::<Vec<_>>();
        for spec in [PlacementSpec::Ring { vnodes: 160 }, PlacementSpec::Modulo] {
            let (was, now) = (build(&spec, &members(3)), build(&spec, &members(4)));
            let mut sorted: Vec<u64> = (0..5000).map(|i| key_hash(format!("key-{i}").as_bytes())).collect();
            sorted.sort_unstable();
            let owners: Vec<Option<usize>> = sorted.iter().map(|&h| now.owner_index(h)).collect();
            let moves = moving(&sorted, &owners, now.members(), was.as_ref());
            // Exactly the keys shared says the join moves, from and to the same nodes.
            let want = moved_keys(was.as_ref(), now.as_ref(), &sorted);
            let got: Vec<(usize, usize, usize)> = moves.iter().map(|m| (m.key, m.from, m.to)).collect();
            let want: Vec<(usize, usize, usize)> = want.moves.iter().map(|m| (m.key, m.from, m.to)).collect();
            assert_eq!(got, want, "{}", spec.name());
            for fraction in [0.0, 0.001, 0.25, 0.5, 0.999, 1.0] {
                let (done, waiting) = split(&moves, fraction);
                assert_eq!(done.len(), (fraction * moves.len() as f64).ceil() as usize);
                assert_eq!(done.len() + waiting.len(), moves.len());
                // The travelled ones are the lowest hashes among the moving.
                let highest_done = done.iter().map(|m| sorted[m.key]).max();
                let lowest_waiting = waiting.iter().map(|m| sorted[m.key]).min();
                if let (Some(d), Some(w)) = (highest_done, lowest_waiting) {
                    assert!(d < w, "{} at {fraction}", spec.name());
                }
            }
        }
    }
}
