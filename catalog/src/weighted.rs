//! Weighted choice of a pool for a new queue: a pure function of the pools, the
//! flavor and a point drawn by the caller.

use crate::model::PoolSpec;

/// The pools a queue of `flavor` may be placed on.
///
/// A non-empty flavor takes the pools whose flavor is its name (see
/// [`crate::flavors`]). The empty flavor takes the pools of flavor `""`, or every pool
/// when no pool has flavor `""`.
pub fn candidates<'a>(pools: &'a [PoolSpec], flavor: &str) -> Vec<&'a PoolSpec> {
    let of_flavor: Vec<&PoolSpec> = pools.iter().filter(|p| p.flavor == flavor).collect();
    if of_flavor.is_empty() && flavor.is_empty() {
        pools.iter().collect()
    } else {
        of_flavor
    }
}

/// Picks one of `pools` with probability proportional to its weight.
///
/// `draw(total)` must return a point in `0..total`, where `total` (> 0) is the sum
/// of the weights; the pool whose interval holds that point is chosen. Pools of
/// weight 0 are never chosen; `None` when no pool has a weight.
pub fn choose_weighted<'a>(
    pools: &[&'a PoolSpec],
    draw: impl FnOnce(u64) -> u64,
) -> Option<&'a PoolSpec> {
    let total: u64 = pools.iter().map(|p| u64::from(p.weight)).sum();
    if total == 0 {
        return None;
    }
    let point = draw(total);
    debug_assert!(point < total, "draw({total}) returned {point}");
    let mut upper = 0u64;
    for pool in pools.iter().filter(|p| p.weight > 0) {
        upper += u64::from(pool.weight);
        if point < upper {
            return Some(pool);
        }
    }
    // Only reachable when `draw` broke its contract; the last weighted pool is the
    // closest reading of an out-of-range point.
    pools.iter().rev().find(|p| p.weight > 0).copied()
}

/// Picks a pool for a new queue of `flavor`: [`candidates`] then [`choose_weighted`].
pub fn choose_pool<'a>(
    pools: &'a [PoolSpec],
    flavor: &str,
    draw: impl FnOnce(u64) -> u64,
) -> Option<&'a PoolSpec> {
    choose_weighted(&candidates(pools, flavor), draw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::pool;

    fn names(pools: &[&PoolSpec]) -> Vec<String> {
        pools.iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn every_point_lands_in_the_interval_of_its_pool() {
        let pools = [pool("a", 1, ""), pool("b", 0, ""), pool("c", 3, "")];
        let refs: Vec<&PoolSpec> = pools.iter().collect();
        let chosen: Vec<String> = (0..4)
            .map(|point| {
                choose_weighted(&refs, |total| {
                    assert_eq!(total, 4);
                    point
                })
            })
            .map(|p| p.unwrap().name.clone())
            .collect();
        assert_eq!(chosen, ["a", "c", "c", "c"]);
    }

    #[test]
    fn counts_follow_the_weights_over_all_points() {
        let pools = [pool("a", 2, ""), pool("b", 5, ""), pool("c", 3, "")];
        let refs: Vec<&PoolSpec> = pools.iter().collect();
        let mut counts = std::collections::BTreeMap::new();
        for point in 0..10 {
            let chosen = choose_weighted(&refs, |_| point).unwrap();
            *counts.entry(chosen.name.as_str()).or_insert(0) += 1;
        }
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [("a", 2), ("b", 5), ("c", 3)]
        );
    }

    #[test]
    fn no_weight_means_no_choice() {
        let pools = [pool("a", 0, ""), pool("b", 0, "")];
        let refs: Vec<&PoolSpec> = pools.iter().collect();
        assert!(choose_weighted(&refs, |_| panic!("nothing to draw")).is_none());
        assert!(choose_weighted(&[], |_| panic!("nothing to draw")).is_none());
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let pools = [pool("a", u32::MAX, ""), pool("b", u32::MAX, "")];
        let refs: Vec<&PoolSpec> = pools.iter().collect();
        let last = choose_weighted(&refs, |total| total - 1).unwrap();
        assert_eq!(last.name, "b");
    }

    #[test]
    fn the_empty_flavor_prefers_the_default_group() {
        let pools = [pool("a", 1, "fast"), pool("b", 1, ""), pool("c", 1, "")];
        assert_eq!(names(&candidates(&pools, "")), ["b", "c"]);
    }

    #[test]
    fn the_empty_flavor_takes_all_pools_when_none_is_in_the_default_group() {
        let pools = [pool("a", 1, "fast"), pool("b", 1, "slow")];
        assert_eq!(names(&candidates(&pools, "")), ["a", "b"]);
    }

    #[test]
    fn a_flavor_takes_only_its_group() {
        let pools = [pool("a", 1, "fast"), pool("b", 1, ""), pool("c", 1, "fast")];
        assert_eq!(names(&candidates(&pools, "fast")), ["a", "c"]);
        assert!(candidates(&pools, "slow").is_empty());
        assert_eq!(choose_pool(&pools, "fast", |_| 1).unwrap().name, "c");
        assert!(choose_pool(&pools, "slow", |_| 0).is_none());
    }
}
