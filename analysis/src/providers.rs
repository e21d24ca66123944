//! Provider implementations, one file each.

pub mod router_stats;
