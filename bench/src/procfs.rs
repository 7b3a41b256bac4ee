//! CPU time and resident memory of processes, read from `/proc`.
//!
//! CPU is `utime + stime` from `/proc/PID/stat` (every thread of the process) in clock ticks;
//! memory is `VmRSS` from `/proc/PID/status`. Several PIDs are summed, for servers that run a
//! master and workers.

use std::io;

/// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`, read without `unsafe` through
/// rustix, which takes it from the auxiliary vector).
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// CPU time (user + system) of one process, in seconds.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// CPU time of one process in seconds: `(user, system)`.
pub fn cpu_split(pid: u32) -> io::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = clock_ticks_per_second() as f64;
    parse_cpu_ticks(&stat)
        .map(|(user, system)| (user as f64 / ticks, system as f64 / ticks))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc stat"))
}

/// CPU time of this process, in seconds.
pub fn self_cpu_seconds() -> io::Result<f64> {
    cpu_seconds(std::process::id())
}

/// Resident set size of one process, in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_rss_kib(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in /proc status"))
}

/// Sums CPU seconds and RSS over several processes.
pub fn usage(pids: &[u32]) -> io::Result<Usage> {
    let mut usage = Usage::default();
    for &pid in pids {
        let (user, system) = cpu_split(pid)?;
        usage.cpu_seconds += user + system;
        usage.system_seconds += system;
        usage.rss_kib += rss_kib(pid)?;
    }
    Ok(usage)
}

/// CPU and memory of a set of processes at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User and system time.
    pub cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the kernel.
    pub system_seconds: f64,
    pub rss_kib: u64,
}

/// The machine's CPU time from `/proc/stat`, in clock ticks: all CPUs, and each one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// Every state summed (user, nice, system, idle, iowait, irq, softirq, steal).
    pub total: u64,
    /// Time the hypervisor ran something else while this machine wanted a CPU.
    pub steal: u64,
    /// One entry per `cpuN` line, in the order `/proc/stat` lists them.
    pub cores: Vec<CoreTicks>,
}

/// One CPU's time from its `cpuN` line, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreTicks {
    /// Every state summed.
    pub total: u64,
    /// Time spent running something: user, nice, system, irq and softirq.
    pub busy: u64,
}

impl MachineTicks {
    /// Reads `/proc/stat` now.
    pub fn now() -> io::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        parse_machine_ticks(&stat)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no cpu line in /proc/stat"))
    }

    /// The share of CPU time stolen between `earlier` and `self`, in percent.
    pub fn steal_percent_since(&self, earlier: &Self) -> f64 {
        percent(
            self.steal.saturating_sub(earlier.steal),
            self.total.saturating_sub(earlier.total),
        )
    }

    /// How busy each CPU was between `earlier` and `self`, in percent. Empty when the two
    /// readings do not list the same CPUs.
    pub fn core_busy_percent_since(&self, earlier: &Self) -> Vec<f64> {
        if self.cores.len() != earlier.cores.len() {
            return Vec::new();
        }
        self.cores
            .iter()
            .zip(&earlier.cores)
            .map(|(now, then)| {
                percent(
                    now.busy.saturating_sub(then.busy),
                    now.total.saturating_sub(then.total),
                )
            })
            .collect()
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The `cpu` line and the `cpuN` lines: user nice system idle iowait irq softirq steal [guest
/// guest_nice]; guest time is already counted in user and nice.
fn parse_machine_ticks(stat: &str) -> Option<MachineTicks> {
    let states = |line: &str| -> Option<Vec<u64>> {
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|value| value.parse().ok())
            .collect::<Option<_>>()?;
        (values.len() == 8).then_some(values)
    };

    let all = states(stat.lines().find(|line| line.starts_with("cpu "))?)?;
    let cores = stat
        .lines()
        .filter(|line| {
            line.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|line| {
            let values = states(line)?;
            Some(CoreTicks {
                total: values.iter().sum(),
                busy: values[0] + values[1] + values[2] + values[5] + values[6],
            })
        })
        .collect::<Option<_>>()?;
    Some(MachineTicks {
        total: all.iter().sum(),
        steal: all[7],
        cores,
    })
}

/// `(utime, stime)` (fields 14 and 15) from a `/proc/PID/stat` line. The command name (field
/// 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1";
        assert_eq!(parse_cpu_ticks(stat), Some((250, 75)));
        assert_eq!(parse_rss_kib("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn parses_machine_ticks_and_steal() {
        let before = parse_machine_ticks(
            "cpu  100 0 50 800 0 0 10 40 0 0\n\
             cpu0 60 0 30 400 0 0 10 0 0 0\n\
             cpu1 40 0 20 400 0 0 0 40 0 0\n\
             intr 12345\n",
        )
        .unwrap();
        let after = parse_machine_ticks(
            "cpu  200 0 60 880 0 0 10 50 7 0\n\
             cpu0 150 0 40 400 0 0 10 0 0 0\n\
             cpu1 50 0 20 480 0 0 0 50 0 0\n",
        )
        .unwrap();

        assert_eq!(before.total, 1000);
        assert_eq!(before.steal, 40);
        assert_eq!(after.steal_percent_since(&before), 5.0);
        assert_eq!(after.core_busy_percent_since(&before), vec![100.0, 10.0]);
        assert_eq!(parse_machine_ticks("cpu0 1 2 3\n"), None);
        assert_eq!(parse_machine_ticks("cpu  1 2 3\n"), None);

        let now = MachineTicks::now().unwrap();
        assert!(!now.cores.is_empty());
    }

    #[test]
    fn reads_this_process() {
        let usage = usage(&[std::process::id()]).unwrap();
        assert!(usage.rss_kib > 0);
        assert!(clock_ticks_per_second() >= 1);
    }
}
