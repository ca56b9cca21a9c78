//! Latency percentiles, `/proc` samples of the server, and the one-line JSON output.

use std::fmt::Write;

/// Latencies in microseconds.
#[derive(Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn record_us(&mut self, us: u64) {
        self.0.push(us);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `p50_ms`, `p99_ms`, `max_ms` (absent when nothing was recorded).
    pub fn report(mut self, json: &mut Json) {
        if self.0.is_empty() {
            return;
        }
        self.0.sort_unstable();
        let at = |q: f64| {
            let i = ((self.0.len() - 1) as f64 * q).round() as usize;
            self.0[i] as f64 / 1000.0
        };
        json.num("p50_ms", at(0.50));
        json.num("p99_ms", at(0.99));
        json.num("max_ms", at(1.0));
    }
}

/// Resident memory and CPU time of a process, from `/proc/PID/status` and `/proc/PID/stat`.
#[derive(Clone, Copy, Default)]
pub struct ProcSample {
    pub rss_kb: u64,
    pub cpu_ms: u64,
}

impl ProcSample {
    pub fn read(pid: u32) -> Result<ProcSample, String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        // After the command name in parentheses: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let (utime, stime) = ticks(11)
            .zip(ticks(12))
            .ok_or_else(|| format!("cannot read /proc/{pid}/stat"))?;
        // USER_HZ is 100 on every Linux that this runs on.
        Ok(ProcSample {
            rss_kb,
            cpu_ms: (utime + stime) * 10,
        })
    }
}

/// One JSON object with a string `scenario` and numeric fields, in insertion order.
pub struct Json(String);

impl Json {
    pub fn new(scenario: &str) -> Json {
        Json(format!("{{\"scenario\":\"{scenario}\""))
    }

    pub fn num(&mut self, key: &str, value: f64) {
        if value.is_finite() {
            let _ = write!(self.0, ",\"{key}\":{}", (value * 1000.0).round() / 1000.0);
        }
    }

    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}
