//! A log-linear latency histogram (microseconds, ~1.6% relative error) that workers
//! fill without locks and the report merges at the end.

use std::time::Duration;

/// Values below `2^SUB_BITS` µs get a bucket each; above, every power of two is split
/// into `2^SUB_BITS` equal buckets, so a bucket is at most 1/64 of its value wide.
const SUB_BITS: u32 = 6;
const SUB_COUNT: usize = 1 << SUB_BITS;
/// Largest recordable value: 2^40 µs (~12.7 days); larger ones are clamped.
const MAX_BITS: u32 = 40;
const BUCKETS: usize = (MAX_BITS - SUB_BITS + 1) as usize * SUB_COUNT;

/// Counts of latencies by bucket, plus the exact count, sum and maximum.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

/// The bucket of a value in microseconds.
fn bucket_of(us: u64) -> usize {
    let us = us.min((1 << MAX_BITS) - 1);
    if us < SUB_COUNT as u64 {
        return us as usize;
    }
    let msb = 63 - us.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (us >> shift) as usize - SUB_COUNT;
    (shift as usize + 1) * SUB_COUNT + sub
}

/// The largest value (µs) that falls into `bucket`.
fn highest_of(bucket: usize) -> u64 {
    if bucket < SUB_COUNT {
        return bucket as u64;
    }
    let shift = (bucket / SUB_COUNT - 1) as u32;
    let sub = (bucket % SUB_COUNT) as u64;
    ((SUB_COUNT as u64 + sub + 1) << shift) - 1
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        self.record_us(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one latency given in microseconds.
    pub fn record_us(&mut self, us: u64) {
        self.counts[bucket_of(us)] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value recorded (exact), 0 when empty.
    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The mean (exact), 0 when empty.
    pub fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64
        }
    }

    /// The value at percentile `p` (0–100]: the smallest bucket bound such that at
    /// least `p`% of the values are at or below it, never above the exact maximum;
    /// 0 when empty.
    pub fn percentile_us(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.count as f64).ceil() as u64;
        let rank = rank.max(1);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return highest_of(bucket).min(self.max_us);
            }
        }
        self.max_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for us in 1..=50 {
            h.record_us(us);
        }
        assert_eq!(h.count, 50);
        assert_eq!(h.percentile_us(50.0), 25);
        assert_eq!(h.percentile_us(90.0), 45);
        assert_eq!(h.percentile_us(100.0), 50);
        assert_eq!(h.max_us(), 50);
        assert!((h.mean_us() - 25.5).abs() < 1e-9);
    }

    #[test]
    fn large_values_stay_within_the_relative_error() {
        for us in [64, 65, 100, 1_000, 12_345, 999_999, 5_000_000_000] {
            let mut h = Histogram::default();
            h.record_us(us);
            h.record_us(u64::MAX / 2); // so the maximum does not cap the answer
            let got = h.percentile_us(50.0);
            assert!(got >= us, "{got} < {us}");
            assert!(
                (got - us) as f64 <= us as f64 / 64.0,
                "{got} too far from {us}"
            );
        }
    }

    #[test]
    fn buckets_are_contiguous_and_increasing() {
        let mut previous = None;
        for bucket in 0..BUCKETS {
            let high = highest_of(bucket);
            assert_eq!(bucket_of(high), bucket);
            if let Some(p) = previous {
                assert_eq!(bucket_of(p + 1), bucket, "gap before bucket {bucket}");
            }
            previous = Some(high);
        }
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = Histogram::default();
        for ms in 1..=1000 {
            h.record(Duration::from_millis(ms));
        }
        let near = |got: u64, want_ms: u64| {
            let want = want_ms * 1000;
            got >= want && got - want <= want / 64
        };
        assert!(near(h.percentile_us(50.0), 500));
        assert!(near(h.percentile_us(90.0), 900));
        assert!(near(h.percentile_us(99.0), 990));
        assert_eq!(h.percentile_us(100.0), 1_000_000);
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_max() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record_us(10);
        b.record_us(30);
        b.record_us(20);
        a.merge(&b);
        assert_eq!(a.count, 3);
        assert_eq!(a.max_us(), 30);
        assert_eq!(a.percentile_us(50.0), 20);
        assert!((a.mean_us() - 20.0).abs() < 1e-9);
    }

    #[test]
    fn empty_is_all_zero() {
        let h = Histogram::default();
        assert_eq!(
            (h.percentile_us(99.0), h.max_us(), h.mean_us()),
            (0, 0, 0.0)
        );
    }

    #[test]
    fn huge_values_are_clamped_not_lost() {
        let mut h = Histogram::default();
        h.record(Duration::MAX);
        assert_eq!(h.count, 1);
        assert_eq!(h.max_us(), u64::MAX);
        assert_eq!(h.percentile_us(50.0), highest_of(BUCKETS - 1));
    }
}
