//! Request metrics: the counters an instance bumps in its event loop, the snapshot it
//! sends to the launcher, and their rendering in the Prometheus text format (0.0.4).
//!
//! The counters are plain integers in one struct owned by the single-threaded loop: no
//! atomics, no allocation per request. This module does no IO (except `http`, the small
//! non-blocking listener that serves the rendered text), and never reads the clock: the
//! caller passes durations.

pub mod http;
mod text;

use std::fmt::Write as _;
use std::time::Duration;

pub use text::{Exposition, CONTENT_TYPE};

/// The `method` label values; anything else counts as `other`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
/// The `status` label values, by the status code's first digit.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// The `reason` label values of refused requests; anything else counts as `other`.
pub const REFUSALS: [&str; 6] = ["400", "408", "413", "414", "431", "other"];
/// Upper bounds of the request-duration histogram's buckets, in microseconds (a last
/// bucket, `+Inf`, takes the rest).
pub const DURATION_BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];
const BUCKETS: usize = DURATION_BOUNDS_US.len() + 1;

/// One instance's counters, and the snapshot of them it sends: counters only grow (per
/// process), `open` and `in_flight` are gauges filled in when the snapshot is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Responses by `METHODS` index and `STATUS_CLASSES` index.
    pub requests: [[u64; 5]; 8],
    /// Body bytes of the responses.
    pub response_bytes: u64,
    pub accepted: u64,
    pub open: u64,
    pub in_flight: u64,
    /// Per bucket (not cumulative); the last is `+Inf`.
    pub duration_buckets: [u64; BUCKETS],
    pub duration_sum_us: u64,
    /// Refused requests by `REFUSALS` index.
    pub refused: [u64; 6],
}

/// The `METHODS` index of a request method.
pub fn method_index(method: &[u8]) -> usize {
    match method {
        b"GET" => 0,
        b"HEAD" => 1,
        b"POST" => 2,
        b"PUT" => 3,
        b"DELETE" => 4,
        b"PATCH" => 5,
        b"OPTIONS" => 6,
        _ => 7,
    }
}

fn status_class(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

fn duration_bucket(us: u64) -> usize {
    DURATION_BOUNDS_US
        .iter()
        .position(|bound| us <= *bound)
        .unwrap_or(BUCKETS - 1)
}

impl Snapshot {
    /// One response (answered, cut short or refused): what the access log logs.
    #[inline]
    pub fn record(&mut self, method: usize, status: u16, body_bytes: u64, took: Duration) {
        // No 128-bit division (as `as_micros` has): this runs once per request.
        let us = took
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(took.subsec_micros()));
        self.requests[method.min(7)][status_class(status)] += 1;
        self.response_bytes += body_bytes;
        self.duration_buckets[duration_bucket(us)] += 1;
        self.duration_sum_us = self.duration_sum_us.saturating_add(us);
    }

    /// A request refused with `status` before the app saw it.
    pub fn refused(&mut self, status: u16) {
        let index = match status {
            400 => 0,
            408 => 1,
            413 => 2,
            414 => 3,
            431 => 4,
            _ => 5,
        };
        self.refused[index] += 1;
    }

    /// Every response counted.
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().flatten().sum()
    }

    /// Adds `other`'s counters (not its gauges): the totals of a slot's earlier processes.
    pub fn add_counters(&mut self, other: &Snapshot) {
        for (mine, theirs) in self.requests.iter_mut().zip(&other.requests) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        let pairs = self
            .duration_buckets
            .iter_mut()
            .zip(&other.duration_buckets)
            .chain(self.refused.iter_mut().zip(&other.refused));
        for (a, b) in pairs {
            *a += b;
        }
        self.response_bytes += other.response_bytes;
        self.accepted += other.accepted;
        self.duration_sum_us = self.duration_sum_us.saturating_add(other.duration_sum_us);
    }

    /// Adds `other`'s gauges too (for the sum of the processes serving one slot).
    pub fn add_all(&mut self, other: &Snapshot) {
        self.add_counters(other);
        self.open += other.open;
        self.in_flight += other.in_flight;
    }

    fn numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.requests
            .iter()
            .flatten()
            .copied()
            .chain([
                self.response_bytes,
                self.accepted,
                self.open,
                self.in_flight,
                self.duration_sum_us,
            ])
            .chain(self.duration_buckets.iter().copied())
            .chain(self.refused.iter().copied())
    }

    /// Every number, space-separated, in a fixed order.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(256);
        for (i, n) in self.numbers().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{n}");
        }
        out
    }

    /// The inverse of `encode`: exactly as many numbers, or `None`.
    pub fn decode<'a>(mut words: impl Iterator<Item = &'a str>) -> Option<Snapshot> {
        let mut next = || words.next()?.parse::<u64>().ok();
        let mut s = Snapshot::default();
        for n in s.requests.iter_mut().flatten() {
            *n = next()?;
        }
        s.response_bytes = next()?;
        s.accepted = next()?;
        s.open = next()?;
        s.in_flight = next()?;
        s.duration_sum_us = next()?;
        for n in s.duration_buckets.iter_mut().chain(s.refused.iter_mut()) {
            *n = next()?;
        }
        words.next().is_none().then_some(s)
    }
}

/// The `q` quantile (0..1) of the durations counted in `buckets` (per bucket, as in
/// `Snapshot`), in seconds, interpolated within its bucket; `None` when empty.
pub fn duration_quantile(buckets: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * count as f64;
    let mut below = 0u64;
    for (i, n) in buckets.iter().enumerate() {
        if *n > 0 && (below + n) as f64 >= rank {
            let low = if i == 0 { 0 } else { DURATION_BOUNDS_US[i - 1] };
            let Some(high) = DURATION_BOUNDS_US.get(i) else {
                return Some(low as f64 / 1e6);
            };
            let within = (rank - below as f64) / *n as f64;
            return Some((low as f64 + within * (high - low) as f64) / 1e6);
        }
        below += n;
    }
    None
}

/// Per-bucket differences `now - before` (counters reset by a restart count from zero).
pub fn bucket_delta(now: &[u64; BUCKETS], before: &[u64; BUCKETS]) -> [u64; BUCKETS] {
    let mut out = [0; BUCKETS];
    for (o, (a, b)) in out.iter_mut().zip(now.iter().zip(before)) {
        *o = a.saturating_sub(*b);
    }
    out
}

/// A family with one sample per instance: name, type, help, and its value.
type SimpleFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Snapshot) -> u64,
);

/// The per-instance families for `instances`, each `(instance label, snapshot)`.
pub fn render_instances(out: &mut Exposition, instances: &[(String, Snapshot)]) {
    out.family(
        "evserve_requests_total",
        "counter",
        "Responses (answered, cut short or refused), by request method and status class.",
    );
    for (label, s) in instances {
        for (m, row) in s.requests.iter().enumerate() {
            for (c, n) in row.iter().enumerate().filter(|(_, n)| **n > 0) {
                let labels = [
                    ("instance", label.as_str()),
                    ("method", METHODS[m]),
                    ("status", STATUS_CLASSES[c]),
                ];
                out.sample("evserve_requests_total", &labels, *n);
            }
        }
    }
    let simple: [SimpleFamily; 4] = [
        (
            "evserve_response_body_bytes_total",
            "counter",
            "Body bytes of the responses.",
            |s| s.response_bytes,
        ),
        (
            "evserve_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            |s| s.accepted,
        ),
        (
            "evserve_connections_open",
            "gauge",
            "Client connections open.",
            |s| s.open,
        ),
        (
            "evserve_requests_in_flight",
            "gauge",
            "Requests begun and not yet answered.",
            |s| s.in_flight,
        ),
    ];
    for (name, kind, help, value) in simple {
        out.family(name, kind, help);
        for (label, s) in instances {
            out.sample(name, &[("instance", label)], value(s));
        }
    }
    render_durations(out, instances);
    out.family(
        "evserve_requests_refused_total",
        "counter",
        "Requests refused before the app saw them, by the status sent (reason).",
    );
    for (label, s) in instances {
        for (reason, n) in REFUSALS.iter().zip(&s.refused) {
            let labels = [("instance", label.as_str()), ("reason", *reason)];
            out.sample("evserve_requests_refused_total", &labels, *n);
        }
    }
}

fn render_durations(out: &mut Exposition, instances: &[(String, Snapshot)]) {
    const NAME: &str = "evserve_request_duration_seconds";
    out.family(
        NAME,
        "histogram",
        "Time from a request's first byte to its response's last, in seconds.",
    );
    for (label, s) in instances {
        let mut cumulative = 0;
        for (i, n) in s.duration_buckets.iter().enumerate() {
            cumulative += n;
            let le = match DURATION_BOUNDS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            let labels = [("instance", label.as_str()), ("le", le.as_str())];
            out.sample(&format!("{NAME}_bucket"), &labels, cumulative);
        }
        let labels = [("instance", label.as_str())];
        out.sample_f64(
            &format!("{NAME}_sum"),
            &labels,
            s.duration_sum_us as f64 / 1e6,
        );
        out.sample(&format!("{NAME}_count"), &labels, cumulative);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Snapshot {
        let mut s = Snapshot::default();
        s.record(method_index(b"GET"), 200, 5, Duration::from_micros(700));
        s.record(method_index(b"POST"), 404, 9, Duration::from_millis(30));
        s.record(method_index(b"BREW"), 503, 0, Duration::from_secs(60));
        s.refused(413);
        s.refused(501);
        s.open = 3;
        s
    }

    #[test]
    fn responses_are_counted_by_method_status_and_bucket() {
        let s = busy();
        assert_eq!(s.requests[0][1], 1);
        assert_eq!(s.requests[2][3], 1);
        assert_eq!(s.requests[7][4], 1);
        assert_eq!(s.requests_total(), 3);
        assert_eq!(s.response_bytes, 14);
        assert_eq!(s.duration_buckets[0], 1);
        assert_eq!(s.duration_buckets[5], 1);
        assert_eq!(s.duration_buckets[BUCKETS - 1], 1);
        assert_eq!(s.refused, [0, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn snapshots_round_trip_and_fit_a_control_message() {
        let s = busy();
        let text = s.encode();
        assert_eq!(Snapshot::decode(text.split(' ')), Some(s));
        let mut huge = Snapshot::default();
        huge.add_counters(&s);
        let words = huge.encode();
        assert!(Snapshot::decode(words.split(' ').skip(1)).is_none());
        assert!(Snapshot::decode(format!("{words} 1").split(' ')).is_none());
        let max = Snapshot::decode(words.split(' ').map(|_| "18446744073709551615")).unwrap();
        assert!(max.encode().len() + 16 < crate::contract::MAX_DATAGRAM);
    }

    #[test]
    fn totals_add_counters_but_not_gauges() {
        let mut total = busy();
        total.add_counters(&busy());
        assert_eq!(total.requests_total(), 6);
        assert_eq!(total.open, 3);
        total.add_all(&busy());
        assert_eq!(total.open, 6);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let mut b = [0; BUCKETS];
        assert_eq!(duration_quantile(&b, 0.5), None);
        b[0] = 100;
        let p50 = duration_quantile(&b, 0.5).unwrap();
        assert!((p50 - 0.0005).abs() < 1e-9, "{p50}");
        b[BUCKETS - 1] = 100;
        assert_eq!(duration_quantile(&b, 0.99), Some(10.0));
        let later = [1; BUCKETS];
        assert_eq!(bucket_delta(&later, &b)[1], 1);
        assert_eq!(bucket_delta(&later, &b)[0], 0);
    }

    #[test]
    fn the_text_format_has_help_type_and_cumulative_buckets() {
        let mut out = Exposition::default();
        render_instances(&mut out, &[("0".into(), busy())]);
        let text = out.finish();
        assert!(text.contains("# TYPE evserve_requests_total counter\n"));
        assert!(text
            .contains("evserve_requests_total{instance=\"0\",method=\"POST\",status=\"4xx\"} 1\n"));
        assert!(text
            .contains("evserve_request_duration_seconds_bucket{instance=\"0\",le=\"0.001\"} 1\n"));
        assert!(text
            .contains("evserve_request_duration_seconds_bucket{instance=\"0\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("evserve_request_duration_seconds_count{instance=\"0\"} 3\n"));
        assert!(text.contains("evserve_requests_refused_total{instance=\"0\",reason=\"413\"} 1\n"));
        assert!(text.ends_with('\n'));
    }
}
