//! The bounds on the worker count: how many workers this machine can hold at most, and how many
//! may boot at once. A worker count past what the machine can run is a typo or an attack on the
//! config, not a plan: `-w 100000` used to make the master fork until the OOM killer ended it.
//!
//! `max_workers = max(4, min(32 × usable CPUs, memory / 32 MiB))`: 32 per CPU is far past any
//! useful count for a CPU-bound Python server (the default is one per CPU) while leaving room
//! for I/O-bound apps; 32 MiB is less than a bare uvicorn worker's RSS, so a count over the
//! memory bound cannot fit. Memory is the smaller of the cgroup limit and the host's MemTotal.
//! CPUs are those `workers = "auto"` counts (affinity mask and cgroup quota). The operator
//! overrides it with `max_workers` (a number, "auto" = this rule).
//!
//! `max_booting = max(4, 2 × usable CPUs)`: booting is CPU-bound (imports), so more at once only
//! slows every one of them and piles up memory before any serves.

use super::detect::detect;
use super::memory::memory_limit;

/// Workers allowed per usable CPU.
pub const WORKERS_PER_CPU: u64 = 32;
/// The least memory a worker takes, for the memory bound.
pub const MIN_WORKER_BYTES: u64 = 32 << 20;

/// The largest worker count this machine accepts without an explicit `max_workers`, and the
/// sentence saying how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerBound {
    pub max: u32,
    pub explanation: String,
}

/// The bound from the CPUs and memory of this process.
pub fn max_workers() -> WorkerBound {
    let cpus = u64::from(detect().workers);
    let memory = [memory_limit().map(|l| l.bytes), host_memory()]
        .into_iter()
        .flatten()
        .min();
    bound(cpus, memory)
}

/// The rule, pure: `max(4, min(32 × cpus, memory / 32 MiB))`.
pub fn bound(cpus: u64, memory: Option<u64>) -> WorkerBound {
    let by_cpu = WORKERS_PER_CPU.saturating_mul(cpus.max(1));
    let by_memory = memory.map(|bytes| bytes / MIN_WORKER_BYTES);
    let max = by_memory.map_or(by_cpu, |m| m.min(by_cpu)).max(4);
    let memory_text = match (memory, by_memory) {
        (Some(bytes), Some(m)) => {
            format!("{} MiB of memory / 32 MiB per worker = {m}", bytes >> 20)
        }
        _ => "memory unknown".to_string(),
    };
    WorkerBound {
        max: u32::try_from(max).unwrap_or(u32::MAX),
        explanation: format!("{WORKERS_PER_CPU} per CPU × {cpus} CPUs = {by_cpu}, {memory_text}"),
    }
}

/// Workers booting at once, at most: `max(4, 2 × usable CPUs)`.
pub fn max_booting() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cpus.saturating_mul(2).max(4)).unwrap_or(u32::MAX)
}

/// MemTotal from /proc/meminfo, in bytes.
fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_smaller_of_cpu_and_memory_with_a_floor() {
        let gib = 1u64 << 30;
        assert_eq!(bound(2, Some(8 * gib)).max, 64, "CPU-bound");
        assert_eq!(bound(64, Some(gib)).max, 32, "memory-bound");
        assert_eq!(bound(1, Some(64 << 20)).max, 4, "never under 4");
        assert_eq!(bound(3, None).max, 96);
        assert!(bound(2, Some(8 * gib))
            .explanation
            .contains("32 per CPU × 2 CPUs = 64"));
    }

    #[test]
    fn mem_total_is_read_in_kib() {
        let text = "MemTotal:        8000000 kB\nMemFree: 1 kB\n";
        assert_eq!(parse_mem_total(text), Some(8_000_000 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
    }
}
