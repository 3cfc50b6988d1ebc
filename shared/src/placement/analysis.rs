//! Analysis of a placement over a key set: keys per member, mean, standard
//! deviation, max/mean; and for a membership change, exactly which keys move
//! where, next to the ideal fraction.
//!
//! Functions take key *hashes* (`key_hash` of each key), so a key set is
//! hashed once and analysed under any number of placements.
//!
//! The page's charts come from here too: keys per node over N simulated
//! members, the ring's balance against virtual nodes ([`vnode_curve`]) and
//! the fraction a join moves against N ([`join_curve`]); curves that need
//! many placements run on a uniform sample of the key set ([`stride_sample`]).

use std::borrow::Cow;

use super::{build_for_keys, Member, Placement, PlacementSpec};

/// How a key set spreads over the members of one placement.
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    /// Keys per member, in [`Placement::members`] order.
    pub counts: Vec<u64>,
    pub total: u64,
    pub mean: f64,
    /// Population standard deviation of `counts`.
    pub std_dev: f64,
    /// Largest count over the mean (1.0 is perfect balance).
    pub max_over_mean: f64,
}

/// Counts the keys each member owns.
pub fn distribution(placement: &dyn Placement, hashes: &[u64]) -> Distribution {
    let mut counts = vec![0u64; placement.members().len()];
    for &h in hashes {
        if let Some(i) = placement.owner_index(h) {
            counts[i] += 1;
        }
    }
    Distribution::from_counts(counts)
}

impl Distribution {
    pub fn from_counts(counts: Vec<u64>) -> Self {
        let total: u64 = counts.iter().sum();
        let n = counts.len().max(1) as f64;
        let mean = total as f64 / n;
        let var = counts.iter().map(|&c| (c as f64 - mean) * (c as f64 - mean)).sum::<f64>() / n;
        let max = counts.iter().copied().max().unwrap_or(0) as f64;
        let max_over_mean = if mean > 0.0 { max / mean } else { 0.0 };
        Distribution { counts, total, mean, std_dev: libm::sqrt(var), max_over_mean }
    }

    /// Standard deviation over the mean (coefficient of variation).
    pub fn relative_std_dev(&self) -> f64 {
        if self.mean > 0.0 {
            self.std_dev / self.mean
        } else {
            0.0
        }
    }
}

/// One key that changes owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// Index of the key in the analysed slice.
    pub key: usize,
    /// Owner before, as an index into the *before* placement's members.
    pub from: usize,
    /// Owner after, as an index into the *after* placement's members.
    pub to: usize,
}

/// The keys a membership change moves.
#[derive(Clone, Debug, PartialEq)]
pub struct Movement {
    pub moves: Vec<Move>,
    pub total: usize,
    /// `moves.len() / total`.
    pub fraction: f64,
    /// The least fraction any placement must move, see [`ideal_fraction`].
    pub ideal: f64,
    /// Keys moved per (from id, to id), sorted by ids.
    pub flows: Vec<(String, String, u64)>,
}

/// The keys whose owner's id differs between two placements, in key order.
fn moves<'a>(
    before: &'a dyn Placement,
    after: &'a dyn Placement,
    hashes: &'a [u64],
) -> impl Iterator<Item = Move> + 'a {
    let (bm, am) = (before.members(), after.members());
    hashes.iter().enumerate().filter_map(move |(key, &h)| {
        let (from, to) = (before.owner_index(h)?, after.owner_index(h)?);
        (bm[from].id != am[to].id).then_some(Move { key, from, to })
    })
}

/// Exactly which keys change owner between two placements of the same key set.
pub fn moved_keys(before: &dyn Placement, after: &dyn Placement, hashes: &[u64]) -> Movement {
    let moves: Vec<Move> = moves(before, after, hashes).collect();
    let (bm, am) = (before.members(), after.members());
    let mut flows: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for m in &moves {
        *flows.entry((bm[m.from].id.clone(), am[m.to].id.clone())).or_default() += 1;
    }
    let total = hashes.len();
    Movement {
        fraction: if total > 0 { moves.len() as f64 / total as f64 } else { 0.0 },
        ideal: ideal_fraction(bm, am),
        total,
        moves,
        flows: flows.into_iter().map(|((f, t), n)| (f, t, n)).collect(),
    }
}

/// The hash ranges (inclusive, in order, merged) of exactly the hashes whose
/// owner differs between `before` and `after`, when both own by ring
/// position ([`Placement::ring_positions`]): a rebalance then asks nodes
/// only for the keys in them (`SCAN` with `ranges`). `None` when either
/// placement is not a ring or has no members: every key must be looked at.
pub fn moved_ranges(before: &dyn Placement, after: &dyn Placement) -> Option<Vec<(u64, u64)>> {
    let (a, b) = (before.ring_positions()?, after.ring_positions()?);
    if a.is_empty() || b.is_empty() {
        return None;
    }
    // Between two neighbouring cuts, (cuts[i-1], cuts[i]], both placements
    // have one owner each: that of their first position at or after cuts[i].
    let mut cuts: Vec<u64> = a.iter().chain(b).copied().collect();
    cuts.sort_unstable();
    cuts.dedup();
    fn owner(p: &dyn Placement, h: u64) -> Option<&str> {
        p.owner_index(h).map(|i| p.members()[i].id.as_str())
    }
    let differs = |h: u64| owner(before, h) != owner(after, h);
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut add = |lo: u64, hi: u64| match ranges.last_mut() {
        Some(last) if last.1.checked_add(1) == Some(lo) => last.1 = hi,
        _ => ranges.push((lo, hi)),
    };
    let (first, last) = (cuts[0], cuts[cuts.len() - 1]);
    // [0, first] and (last, MAX] are one arc across the top of the ring.
    let wrap = differs(first);
    if wrap {
        add(0, first);
    }
    for w in cuts.windows(2) {
        if differs(w[1]) {
            add(w[0] + 1, w[1]);
        }
    }
    if wrap && last < u64::MAX {
        add(last + 1, u64::MAX);
    }
    Some(ranges)
}

/// The least expected fraction of keys that must move when membership goes
/// from `before` to `after`: the total variation distance between the two
/// weight shares. One join into N equal members gives 1/(N+1); one leave
/// out of N gives 1/N.
pub fn ideal_fraction(before: &[Member], after: &[Member]) -> f64 {
    let share = |ms: &[Member], id: &str| {
        let total: u64 = ms.iter().map(|m| m.weight as u64).sum();
        let w = ms.iter().find(|m| m.id == id).map_or(0, |m| m.weight as u64);
        if total == 0 {
            0.0
        } else {
            w as f64 / total as f64
        }
    };
    let mut ids: Vec<&str> = before.iter().chain(after).map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.iter().map(|id| (share(after, id) - share(before, id)).max(0.0)).sum()
}

/// `placement` (built over `members` by `spec`) after `joiner` joins, as
/// the cluster does it: `add_member` on the live placement (jump keeps its
/// buckets); bounded places the key set afresh over the new members.
pub fn joined(
    spec: &PlacementSpec,
    mut placement: Box<dyn Placement>,
    hashes: &[u64],
    joiner: Member,
) -> Box<dyn Placement> {
    if matches!(spec, PlacementSpec::Bounded { .. }) {
        let mut all = placement.members().to_vec();
        all.push(joiner);
        return build_for_keys(spec, &all, hashes);
    }
    placement.add_member(joiner);
    placement
}

/// `n` simulated members of weight 1, `node-0001` .. (ids sort in index
/// order), for charts over any cluster size.
pub fn simulated_members(n: usize) -> Vec<Member> {
    (1..=n).map(|i| Member::new(format!("node-{i:04}"))).collect()
}

/// The member that joins in [`join_curve`].
pub fn simulated_joiner() -> Member {
    Member::new("node-new")
}

/// Keys a curve of many placements is computed on, at most.
pub const CURVE_SAMPLE: usize = 100_000;
/// Keys the join curve is computed on, at most: it places the set twice
/// per algorithm per cluster size, up to 1,000 nodes.
pub const JOIN_SAMPLE: usize = 20_000;
/// Virtual nodes per node along [`vnode_curve`] (log-spaced over [`super::VNODES`]).
pub const VNODE_STEPS: [u32; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
/// Cluster sizes along [`join_curve`].
pub const JOIN_STEPS: [usize; 8] = [3, 5, 10, 20, 50, 100, 300, 1000];

/// A uniform sample of at most `limit` hashes: every key when there are no
/// more, else the keys at `i * len / limit` (a stride over the whole set).
pub fn stride_sample(hashes: &[u64], limit: usize) -> Cow<'_, [u64]> {
    if hashes.len() <= limit {
        return Cow::Borrowed(hashes);
    }
    Cow::Owned((0..limit).map(|i| hashes[(i as u128 * hashes.len() as u128 / limit as u128) as usize]).collect())
}

/// The ring's balance at one number of virtual nodes per node.
#[derive(Clone, Debug, PartialEq)]
pub struct VnodePoint {
    pub vnodes: u32,
    pub std_dev: f64,
    /// Std dev over the mean.
    pub relative_std_dev: f64,
    pub max_over_mean: f64,
}

/// The classic curve: the ring's std dev and max/mean of keys per member
/// over `members` at each of `steps` virtual nodes per node.
pub fn vnode_curve(members: &[Member], hashes: &[u64], steps: &[u32]) -> Vec<VnodePoint> {
    steps
        .iter()
        .map(|&vnodes| {
            let ring = build_for_keys(&PlacementSpec::Ring { vnodes }, members, hashes);
            let d = distribution(ring.as_ref(), hashes);
            VnodePoint {
                vnodes,
                std_dev: d.std_dev,
                relative_std_dev: d.relative_std_dev(),
                max_over_mean: d.max_over_mean,
            }
        })
        .collect()
}

/// The fraction of keys one join moves at one cluster size.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinPoint {
    /// Members before the join.
    pub n: usize,
    /// Per spec, in the order given.
    pub fractions: Vec<f64>,
    /// 1/(N+1), see [`ideal_fraction`].
    pub ideal: f64,
}

/// For each of `steps` cluster sizes N: the fraction of `hashes` that move
/// when one member joins N [`simulated_members`], under each spec.
pub fn join_curve(specs: &[PlacementSpec], steps: &[usize], hashes: &[u64]) -> Vec<JoinPoint> {
    steps
        .iter()
        .map(|&n| {
            let members = simulated_members(n);
            let mut after_members = members.clone();
            after_members.push(simulated_joiner());
            let fractions = specs
                .iter()
                .map(|spec| {
                    // The owners before, then the same placement joined (one build, not two).
                    let before = build_for_keys(spec, &members, hashes);
                    let ids: Vec<Member> = before.members().to_vec();
                    let owners: Vec<Option<usize>> = hashes.iter().map(|&h| before.owner_index(h)).collect();
                    let after = joined(spec, before, hashes, simulated_joiner());
                    let am = after.members();
                    let moved = hashes
                        .iter()
                        .zip(&owners)
                        .filter(|&(&h, from)| match (from, after.owner_index(h)) {
                            (Some(f), Some(t)) => ids[*f].id != am[t].id,
                            _ => false,
                        })
                        .count();
                    if hashes.is_empty() {
                        0.0
                    } else {
                        moved as f64 / hashes.len() as f64
                    }
                })
                .collect();
            JoinPoint { n, fractions, ideal: ideal_fraction(&members, &after_members) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ids: &[&str]) -> Vec<Member> {
        ids.iter().map(|id| Member::new(*id)).collect()
    }

    #[test]
    fn moved_ranges_hold_exactly_the_keys_that_move_on_a_ring() {
        use crate::hash::key_hash;
        use crate::placement::{build, PlacementSpec};
        let hashes: Vec<u64> = (0..20_000).map(|i| key_hash(format!("k{i}").as_bytes())).collect();
        let inside = |ranges: &[(u64, u64)], h: u64| ranges.iter().any(|&(lo, hi)| lo <= h && h <= hi);
        let four = ms(&["a", "b", "c", "d"]);
        let changes = [
            (PlacementSpec::Ring { vnodes: 16 }, ms(&["a", "b", "c", "d", "e"])),
            (PlacementSpec::Ring { vnodes: 16 }, ms(&["a", "c", "d"])),
            (PlacementSpec::Ring { vnodes: 40 }, four.clone()),
        ];
        for (after_spec, after_members) in changes {
            let before = build(&PlacementSpec::Ring { vnodes: 16 }, &four);
            let after = build(&after_spec, &after_members);
            let ranges = moved_ranges(before.as_ref(), after.as_ref()).unwrap();
            assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "sorted, disjoint, merged");
            let moving: Vec<usize> =
                moved_keys(before.as_ref(), after.as_ref(), &hashes).moves.iter().map(|m| m.key).collect();
            let in_ranges: Vec<usize> = (0..hashes.len()).filter(|&k| inside(&ranges, hashes[k])).collect();
            assert_eq!(moving, in_ranges);
            // And at the edges of each range, where off-by-ones would hide.
            let id = |p: &dyn Placement, h: u64| p.owner_index(h).map(|i| p.members()[i].id.clone());
            for &(lo, hi) in &ranges {
                for h in [lo, hi] {
                    assert_ne!(id(before.as_ref(), h), id(after.as_ref(), h));
                }
                for h in [lo.wrapping_sub(1), hi.wrapping_add(1)] {
                    if !inside(&ranges, h) {
                        assert_eq!(id(before.as_ref(), h), id(after.as_ref(), h));
                    }
                }
            }
        }
        // Not a ring: no ranges, every key is looked at.
        let jump = build(&PlacementSpec::Jump, &four);
        assert!(moved_ranges(jump.as_ref(), jump.as_ref()).is_none());
    }

    #[test]
    fn ideal_is_one_over_n_plus_one_on_join_and_one_over_n_on_leave() {
        let four = ms(&["a", "b", "c", "d"]);
        let five = ms(&["a", "b", "c", "d", "e"]);
        assert!((ideal_fraction(&four, &five) - 0.2).abs() < 1e-12);
        assert!((ideal_fraction(&five, &four) - 0.2).abs() < 1e-12);
        assert!((ideal_fraction(&four, &ms(&["a", "b", "c"])) - 0.25).abs() < 1e-12);
        assert_eq!(ideal_fraction(&four, &four), 0.0);
    }

    #[test]
    fn distribution_statistics_are_exact() {
        let d = Distribution::from_counts(vec![2, 4, 6]);
        assert_eq!(d.total, 12);
        assert_eq!(d.mean, 4.0);
        assert!((d.std_dev - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(d.max_over_mean, 1.5);
    }

    #[test]
    fn curves_agree_with_placing_by_hand() {
        use crate::hash::key_hash;
        let hashes: Vec<u64> = (0..5_000).map(|i| key_hash(format!("k{i}").as_bytes())).collect();
        let members = simulated_members(10);
        assert_eq!(members[0].id, "node-0001");
        assert!(members.windows(2).all(|w| w[0].id < w[1].id));
        let curve = vnode_curve(&members, &hashes, &VNODE_STEPS);
        let ring = build_for_keys(&PlacementSpec::Ring { vnodes: 100 }, &members, &hashes);
        let d = distribution(ring.as_ref(), &hashes);
        let at100 = curve.iter().find(|p| p.vnodes == 100).unwrap();
        assert_eq!((at100.std_dev, at100.max_over_mean), (d.std_dev, d.max_over_mean));
        // More virtual nodes, better balance (1 against 1000).
        assert!(curve[0].relative_std_dev > 3.0 * curve[9].relative_std_dev);

        let specs = PlacementSpec::all_defaults();
        let join = join_curve(&specs, &[3, 10], &hashes);
        assert_eq!(join[1].ideal, 1.0 / 11.0);
        for (spec, &f) in specs.iter().zip(&join[1].fractions) {
            let before = build_for_keys(spec, &members, &hashes);
            let after = joined(spec, build_for_keys(spec, &members, &hashes), &hashes, simulated_joiner());
            assert_eq!(f, moved_keys(before.as_ref(), after.as_ref(), &hashes).fraction, "{}", spec.name());
        }
        assert!(join[1].fractions[0] > 0.8, "modulo moves most keys");
    }

    #[test]
    fn a_stride_sample_spans_the_whole_set() {
        let hashes: Vec<u64> = (0..1000).collect();
        assert_eq!(stride_sample(&hashes, 2000).len(), 1000);
        let s = stride_sample(&hashes, 100);
        assert_eq!(s.len(), 100);
        assert_eq!((s[0], s[1], s[99]), (0, 10, 990));
        assert!(stride_sample(&[], 0).is_empty());
    }
}
