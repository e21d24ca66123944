//! Traffic weights: a percentage that cannot leave 0..=100.
//!
//! The status keeps Flagger's `canaryWeight: int`; everything past the API (the engine's
//! split, the routing intent, the backends' plans) carries a [`Weight`], so a weight above 100
//! or below 0 cannot travel from one part to the next.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A share of traffic in percent, always within 0..=100.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Weight(u8);

/// A number that is not a percentage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a weight: use a percentage from 0 to 100")]
pub struct WeightOutOfRange(pub i64);

// === impl Weight ===

impl Weight {
    /// No traffic.
    pub const ZERO: Weight = Weight(0);
    /// All traffic.
    pub const FULL: Weight = Weight(100);

    /// The weight `percent`, or an error when it is above 100.
    pub fn new(percent: u8) -> Result<Weight, WeightOutOfRange> {
        if percent <= 100 {
            Ok(Weight(percent))
        } else {
            Err(WeightOutOfRange(i64::from(percent)))
        }
    }

    /// `value` clamped into 0..=100 (for fields that Flagger clamps, such as `maxWeight`).
    pub fn clamped(value: i64) -> Weight {
        Weight(u8::try_from(value.clamp(0, 100)).unwrap_or(100))
    }

    /// The percentage.
    pub fn get(self) -> u8 {
        self.0
    }

    /// What is left of 100: the primary's share when this is the canary's.
    pub fn complement(self) -> Weight {
        Weight(100 - self.0)
    }

    /// This weight plus `step`, at most 100.
    pub fn saturating_add(self, step: u8) -> Weight {
        Weight(self.0.saturating_add(step).min(100))
    }

    /// This weight minus `step`, at least 0.
    pub fn saturating_sub(self, step: u8) -> Weight {
        Weight(self.0.saturating_sub(step))
    }

    /// The canary's share of two relative weights (Gateway API `backendRefs[].weight`), rounded
    /// down; all to the primary when both are zero.
    pub fn share(canary: u64, total: u64) -> Weight {
        if total == 0 {
            return Weight::ZERO;
        }
        Weight::clamped(i64::try_from(canary.min(total) * 100 / total).unwrap_or(100))
    }

    /// The canary's share of two fractional weights (SMI and Consul write numbers such as
    /// `0.5`), rounded to the nearest percent; None when there is no weight at all.
    pub fn share_of(canary: f64, total: f64) -> Option<Weight> {
        (total > 0.0).then(|| Weight::clamped((canary * 100.0 / total).round() as i64))
    }
}

impl TryFrom<i32> for Weight {
    type Error = WeightOutOfRange;

    fn try_from(v: i32) -> Result<Self, Self::Error> {
        u8::try_from(v)
            .ok()
            .filter(|p| *p <= 100)
            .map(Weight)
            .ok_or(WeightOutOfRange(i64::from(v)))
    }
}

impl TryFrom<u64> for Weight {
    type Error = WeightOutOfRange;

    fn try_from(v: u64) -> Result<Self, Self::Error> {
        u8::try_from(v)
            .ok()
            .filter(|p| *p <= 100)
            .map(Weight)
            .ok_or(WeightOutOfRange(i64::try_from(v).unwrap_or(i64::MAX)))
    }
}

impl From<Weight> for i32 {
    fn from(w: Weight) -> i32 {
        i32::from(w.0)
    }
}

impl From<Weight> for u32 {
    fn from(w: Weight) -> u32 {
        u32::from(w.0)
    }
}

impl From<Weight> for u64 {
    fn from(w: Weight) -> u64 {
        u64::from(w.0)
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        u8::try_from(v)
            .ok()
            .filter(|p| *p <= 100)
            .map(Weight)
            .ok_or_else(|| serde::de::Error::custom(WeightOutOfRange(v)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn never_leaves_the_percent_range() {
        assert!(Weight::new(101).is_err());
        assert_eq!(Weight::try_from(-1), Err(WeightOutOfRange(-1)));
        assert_eq!(Weight::clamped(250), Weight::FULL);
        assert_eq!(Weight::clamped(-3), Weight::ZERO);
        assert_eq!(Weight::new(90).unwrap().saturating_add(20), Weight::FULL);
        assert_eq!(Weight::new(10).unwrap().saturating_sub(20), Weight::ZERO);
        assert_eq!(Weight::new(30).unwrap().complement().get(), 70);
        assert_eq!(Weight::share(1, 3).get(), 33);
        assert_eq!(Weight::share(0, 0), Weight::ZERO);
        assert!(serde_json::from_str::<Weight>("101").is_err());
        assert_eq!(serde_json::from_str::<Weight>("55").unwrap().get(), 55);
    }
}
