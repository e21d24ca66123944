//! Free loopback ports for the processes a test starts.
//!
//! A port found by binding port 0 comes from the kernel's ephemeral range, the same range every
//! outgoing connection takes its source port from. Between the moment a test learns such a port
//! and the moment its server binds it, any connection on the machine (kube-apiserver's own
//! connections to etcd, a proxy's to its upstreams) may take it, and the server then fails to
//! start. Ports handed out here come from outside that range, are checked free by binding them,
//! and are never handed out twice by one process.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, TcpListener},
    sync::{Mutex, OnceLock},
};

/// The lowest port handed out.
const LOW: u16 = 10_000;

/// A free port on 127.0.0.1 outside the kernel's ephemeral range, not handed out before by
/// this process. Falls back to a kernel-chosen port when no range is left (never in practice).
pub fn free_port() -> u16 {
    static TAKEN: OnceLock<Mutex<(HashSet<u16>, u64)>> = OnceLock::new();
    let state = TAKEN.get_or_init(|| Mutex::new((HashSet::new(), seed())));
    let (low, high) = range();
    let span = u64::from(high - low) + 1;
    let mut guard = match state.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let (taken, rng) = &mut *guard;
    for _ in 0..512 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let port = low + u16::try_from(*rng % span).unwrap_or(0);
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
    kernel_port()
}

/// The ports outside the ephemeral range: below it when there is room (Linux's default range
/// is 32768–60999), else above it.
fn range() -> (u16, u16) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut nums = text
        .split_whitespace()
        .filter_map(|n| n.parse::<u16>().ok());
    let (first, last) = (nums.next().unwrap_or(32_768), nums.next().unwrap_or(60_999));
    if first > LOW + 2_000 {
        (LOW, first - 1)
    } else if last < 63_000 {
        (last + 1, 65_535)
    } else {
        (LOW, 32_767)
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

fn kernel_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_never_repeat() {
        let (low, high) = range();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let p = free_port();
            assert!((low..=high).contains(&p), "{p} outside {low}..={high}");
            assert!(seen.insert(p), "{p} handed out twice");
        }
    }
}
