//! Counters and a latency histogram, rendered in the Prometheus text format
//! at `/metrics`. Hand-rolled: a handful of atomics needs no metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the invocation-duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.01, 0.05, 0.25, 1.0, 5.0, 30.0,
];

/// The host's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Invocations by module, then status.
    invocations: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_sum_ns: AtomicU64,
    duration_count: AtomicU64,
    /// HTTP responses by status class (1xx … 5xx).
    http: [AtomicU64; 5],
    /// Invocations refused because too many were running.
    busy: AtomicU64,
}

/// Point-in-time values the metrics do not track themselves.
#[derive(Debug)]
pub struct Gauges {
    /// Instances running now.
    pub running: usize,
    /// Modules stored.
    pub modules: usize,
    /// Seconds since the host started.
    pub uptime: Duration,
}

impl Metrics {
    /// Counts one invocation of `module` that ended with `status`
    /// (`ok` or a failure code) after `duration`.
    pub fn invocation(&self, module: &str, status: &'static str, duration: Duration) {
        {
            let mut invocations = self.invocations.lock().unwrap_or_else(|p| p.into_inner());
            // Look up by `&str` first: no allocation once a module is known.
            let by_status = match invocations.get_mut(module) {
                Some(by_status) => by_status,
                None => invocations.entry(module.to_owned()).or_default(),
            };
            *by_status.entry(status).or_default() += 1;
        }
        let secs = duration.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_sum_ns
            .fetch_add(duration.as_nanos() as u64, Ordering::Relaxed);
        self.duration_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an HTTP response.
    pub fn http_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an invocation refused for want of capacity.
    pub fn busy(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders everything in the Prometheus text exposition format.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP weft_build_info The running weft version.");
        let _ = writeln!(out, "# TYPE weft_build_info gauge");
        let _ = writeln!(
            out,
            "weft_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        gauge(
            &mut out,
            "weft_uptime_seconds",
            "Seconds since the host started.",
            gauges.uptime.as_secs_f64(),
        );
        gauge(
            &mut out,
            "weft_instances_running",
            "Instances running now.",
            gauges.running as f64,
        );
        gauge(
            &mut out,
            "weft_modules",
            "Modules stored.",
            gauges.modules as f64,
        );

        let _ = writeln!(
            out,
            "# HELP weft_invocations_total Invocations by module and outcome (ok, or the failure code)."
        );
        let _ = writeln!(out, "# TYPE weft_invocations_total counter");
        let invocations = self.invocations.lock().unwrap_or_else(|p| p.into_inner());
        for (module, by_status) in invocations.iter() {
            for (status, count) in by_status {
                let _ = writeln!(
                    out,
                    "weft_invocations_total{{module=\"{}\",status=\"{status}\"}} {count}",
                    escape(module)
                );
            }
        }
        drop(invocations);

        let _ = writeln!(
            out,
            "# HELP weft_invocation_duration_seconds Wall-clock time of invocations."
        );
        let _ = writeln!(out, "# TYPE weft_invocation_duration_seconds histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "weft_invocation_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "weft_invocation_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "weft_invocation_duration_seconds_sum {}",
            self.duration_sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "weft_invocation_duration_seconds_count {count}");

        let _ = writeln!(
            out,
            "# HELP weft_invocations_busy_total Invocations refused because the host was at capacity."
        );
        let _ = writeln!(out, "# TYPE weft_invocations_busy_total counter");
        let _ = writeln!(
            out,
            "weft_invocations_busy_total {}",
            self.busy.load(Ordering::Relaxed)
        );

        let _ = writeln!(
            out,
            "# HELP weft_http_responses_total HTTP responses by status class."
        );
        let _ = writeln!(out, "# TYPE weft_http_responses_total counter");
        for (i, count) in self.http.iter().enumerate() {
            let _ = writeln!(
                out,
                "weft_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                count.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.invocation("hello", "ok", Duration::from_micros(30));
        metrics.invocation("hello", "deadline_exceeded", Duration::from_secs(2));
        metrics.http_response(200);
        metrics.http_response(503);
        let text = metrics.render(&Gauges {
            running: 1,
            modules: 2,
            uptime: Duration::from_secs(5),
        });
        assert!(text.contains("weft_invocations_total{module=\"hello\",status=\"ok\"} 1"));
        assert!(text.contains("weft_invocation_duration_seconds_bucket{le=\"0.00005\"} 1"));
        assert!(text.contains("weft_invocation_duration_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("weft_invocation_duration_seconds_count 2"));
        assert!(text.contains("weft_http_responses_total{class=\"5xx\"} 1"));
        assert!(text.contains("weft_modules 2"));
    }
}
