//! The launcher's `--metrics` listener: `/metrics` (Prometheus text), `/` (the live
//! status page) and `/status.json` (what the page polls), served from the launcher's own
//! mio loop (no thread: the launcher may fork a preloader).
//!
//! Counters are kept per slot (`instance` label): the totals of the slot's processes
//! that exited plus the last snapshot of each live one, so they only grow while the
//! launcher runs; what a process served after its last snapshot (at most
//! `contract::HEARTBEAT_INTERVAL`, the snapshot goes with each heartbeat) is lost when it dies. Reads /proc for memory and CPU;
//! never changes the instances.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use super::child::Instance;
use super::status::state_name;
use super::Launcher;
use crate::metrics::http::{Answer, MetricsServer};
use crate::metrics::{self, Exposition, Snapshot};

/// The status page, self-contained (inline CSS and JS).
const STATUS_PAGE: &str = include_str!("status_page.html");
/// How often the rate and latency history gets a point, and how many it keeps.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const HISTORY_POINTS: usize = 300;
const RECENT_RESTARTS: usize = 20;
const STATES: [&str; 6] = [
    "starting",
    "ready",
    "reloading",
    "draining",
    "leaving",
    "given-up",
];

/// Why a slot got a new process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartReason {
    /// Crashed, was killed by someone else, exited non-zero, or failed to start.
    Crash,
    /// Exited with code 0 while it was meant to serve (an operator's SIGTERM).
    Exit,
    /// Killed by `--timeout`.
    Timeout,
    /// Replaced by a rolling reload (SIGHUP).
    Reload,
    /// Replaced by the launcher's recycling policy.
    Recycle,
}

impl RestartReason {
    const ALL: [RestartReason; 5] = [
        RestartReason::Crash,
        RestartReason::Exit,
        RestartReason::Timeout,
        RestartReason::Reload,
        RestartReason::Recycle,
    ];

    /// The reason for an instance that ended on its own (or was killed by `--timeout`).
    pub fn of(ending: super::policy::Ending) -> RestartReason {
        match ending {
            super::policy::Ending::TimedOut => RestartReason::Timeout,
            super::policy::Ending::Clean => RestartReason::Exit,
            super::policy::Ending::Failed => RestartReason::Crash,
        }
    }

    fn label(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Exit => "exit",
            RestartReason::Timeout => "timeout",
            RestartReason::Reload => "reload",
            RestartReason::Recycle => "recycle",
        }
    }
}

struct RestartEvent {
    at: SystemTime,
    slot: usize,
    reason: RestartReason,
    detail: String,
}

/// One point of the status page's chart.
struct Sample {
    at: SystemTime,
    per_second: f64,
    p50: Option<f64>,
    p99: Option<f64>,
}

/// What the launcher keeps for `--metrics`.
pub(super) struct Board {
    server: Option<MetricsServer>,
    /// Per slot: the counters of its processes that have exited.
    retired: Vec<Snapshot>,
    restarts: [u64; 5],
    recent: VecDeque<RestartEvent>,
    history: VecDeque<Sample>,
    /// When the last point was taken, with the totals then.
    last_sample: Option<(Instant, Snapshot)>,
}

impl Board {
    pub fn bind(addr: std::net::SocketAddr, registry: &mio::Registry) -> Result<Board, String> {
        Ok(Board {
            server: Some(MetricsServer::bind(addr, registry)?),
            retired: Vec::new(),
            restarts: [0; 5],
            recent: VecDeque::new(),
            history: VecDeque::new(),
            last_sample: None,
        })
    }
}

impl Launcher {
    /// Answers the metrics listener's clients and takes a chart point when one is due.
    pub(super) fn serve_metrics(&mut self) {
        let Some(mut board) = self.metrics.take() else {
            return;
        };
        self.sample(&mut board);
        if let Some(mut server) = board.server.take() {
            server.serve(self.poll.registry(), |path| self.page(&board, path));
            board.server = Some(server);
        }
        self.metrics = Some(board);
    }

    /// A process of `inst.slot` exited: its counters join the slot's totals.
    pub(super) fn note_exit(&mut self, inst: &Instance) {
        let Some(board) = self.metrics.as_mut() else {
            return;
        };
        if board.retired.len() <= inst.slot {
            board.retired.resize(inst.slot + 1, Snapshot::default());
        }
        board.retired[inst.slot].add_counters(&inst.stats);
    }

    /// `slot` gets a new process for `reason`.
    pub(super) fn note_restart(&mut self, slot: usize, reason: RestartReason, detail: &str) {
        let Some(board) = self.metrics.as_mut() else {
            return;
        };
        board.restarts[reason as usize] += 1;
        if board.recent.len() == RECENT_RESTARTS {
            board.recent.pop_front();
        }
        board.recent.push_back(RestartEvent {
            at: SystemTime::now(),
            slot,
            reason,
            detail: detail.to_string(),
        });
    }

    fn page(&self, board: &Board, path: &str) -> Answer {
        match path {
            "/metrics" => Answer::ok(metrics::CONTENT_TYPE, self.exposition(board)),
            "/status.json" => Answer::ok("application/json", self.page_json(board)),
            "/" => Answer::ok(
                "text/html; charset=utf-8",
                STATUS_PAGE.replace("\"__STATUS__\"", &self.page_json(board)),
            ),
            _ => Answer::not_found(),
        }
    }

    /// Per slot: retired totals plus every live process's last snapshot.
    fn slot_totals(&self, board: &Board) -> Vec<Snapshot> {
        let mut totals = board.retired.clone();
        totals.resize(totals.len().max(self.slots.len()), Snapshot::default());
        for inst in &self.instances {
            if totals.len() <= inst.slot {
                totals.resize(inst.slot + 1, Snapshot::default());
            }
            totals[inst.slot].add_all(&inst.stats);
        }
        totals
    }

    fn sample(&self, board: &mut Board) {
        let now = Instant::now();
        if board
            .last_sample
            .as_ref()
            .is_some_and(|(t, _)| now.duration_since(*t) < SAMPLE_EVERY)
        {
            return;
        }
        let mut total = Snapshot::default();
        for s in self.slot_totals(board) {
            total.add_counters(&s);
        }
        if let Some((then, before)) = &board.last_sample {
            let seconds = now.duration_since(*then).as_secs_f64().max(1e-3);
            let served = total
                .requests_total()
                .saturating_sub(before.requests_total());
            let delta = metrics::bucket_delta(&total.duration_buckets, &before.duration_buckets);
            if board.history.len() == HISTORY_POINTS {
                board.history.pop_front();
            }
            board.history.push_back(Sample {
                at: SystemTime::now(),
                per_second: served as f64 / seconds,
                p50: metrics::duration_quantile(&delta, 0.5),
                p99: metrics::duration_quantile(&delta, 0.99),
            });
        }
        board.last_sample = Some((now, total));
    }

    fn exposition(&self, board: &Board) -> String {
        let mut out = Exposition::default();
        let per_slot: Vec<(String, Snapshot)> = self
            .slot_totals(board)
            .into_iter()
            .enumerate()
            .map(|(slot, s)| (slot.to_string(), s))
            .collect();
        metrics::render_instances(&mut out, &per_slot);
        self.render_launcher(board, &mut out);
        out.finish()
    }

    fn render_launcher(&self, board: &Board, out: &mut Exposition) {
        out.family("evserve_instances", "gauge", "Instance processes by state.");
        for state in STATES {
            let n = if state == "given-up" {
                self.slots.iter().filter(|s| s.given_up).count()
            } else {
                self.instances
                    .iter()
                    .filter(|i| state_name(i) == state)
                    .count()
            };
            out.sample("evserve_instances", &[("state", state)], n as u64);
        }
        out.family(
            "evserve_restarts_total",
            "counter",
            "New instance processes started in place of one, by reason.",
        );
        for reason in RestartReason::ALL {
            let n = board.restarts[reason as usize];
            out.sample("evserve_restarts_total", &[("reason", reason.label())], n);
        }
        let per_process: [(&str, &str, &str); 2] = [
            (
                "evserve_instance_resident_memory_bytes",
                "gauge",
                "Resident memory of each instance process (from /proc).",
            ),
            (
                "evserve_instance_cpu_seconds_total",
                "counter",
                "User and system CPU time of each instance process (from /proc).",
            ),
        ];
        for (index, (name, kind, help)) in per_process.into_iter().enumerate() {
            out.family(name, kind, help);
            for inst in &self.instances {
                let (slot, pid) = (inst.slot.to_string(), inst.pid.to_string());
                let labels = [("instance", slot.as_str()), ("pid", pid.as_str())];
                match index {
                    0 => out.sample(name, &labels, rss_bytes(inst.pid)),
                    _ => out.sample_f64(name, &labels, cpu_seconds(inst.pid)),
                }
            }
        }
    }

    fn page_json(&self, board: &Board) -> String {
        let now = Instant::now();
        let mut out = String::with_capacity(4096);
        let _ = write!(
            out,
            "{{\"pid\":{},\"app\":{},\"where\":{},\"uptime\":{:.1},\"now\":{:.3},\"instances\":[",
            std::process::id(),
            json_string(&self.config.instance.app.text),
            json_string(&self.where_text()),
            now.duration_since(self.started).as_secs_f64(),
            unix_seconds(SystemTime::now()),
        );
        self.write_instances(&mut out, now);
        out.push_str("],\"history\":[");
        write_history(&mut out, board);
        out.push_str("],\"restarts\":[");
        write_restarts(&mut out, board);
        out.push_str("]}");
        out
    }

    /// The status page's rows: one per instance process.
    fn write_instances(&self, out: &mut String, now: Instant) {
        let mut rows: Vec<&Instance> = self.instances.iter().collect();
        rows.sort_by_key(|i| (i.slot, i.started));
        for (n, inst) in rows.into_iter().enumerate() {
            let restarts = self.slots.get(inst.slot).map_or(0, |s| s.history.total);
            let _ = write!(
                out,
                "{}{{\"slot\":{},\"pid\":{},\"port\":{},\"state\":\"{}\",\"uptime\":{:.1},\
                 \"requests\":{},\"connections\":{},\"rss\":{},\"cpu\":{:.2},\"restarts\":{}}}",
                if n > 0 { "," } else { "" },
                inst.slot,
                inst.pid,
                json_string(&self.slot_port(inst.slot)),
                state_name(inst),
                now.duration_since(inst.started).as_secs_f64(),
                inst.stats.requests_total(),
                inst.stats.open,
                rss_bytes(inst.pid),
                cpu_seconds(inst.pid),
                restarts,
            );
        }
    }
}

/// The chart's points: `[unix time, requests/s, p50 ms, p99 ms]`.
fn write_history(out: &mut String, board: &Board) {
    for (n, s) in board.history.iter().enumerate() {
        let ms = |q: Option<f64>| q.map_or("null".to_string(), |v| format!("{:.3}", v * 1e3));
        let _ = write!(
            out,
            "{}[{:.3},{:.2},{},{}]",
            if n > 0 { "," } else { "" },
            unix_seconds(s.at),
            s.per_second,
            ms(s.p50),
            ms(s.p99)
        );
    }
}

/// The recent restarts, newest first.
fn write_restarts(out: &mut String, board: &Board) {
    for (n, r) in board.recent.iter().rev().enumerate() {
        let _ = write!(
            out,
            "{}{{\"at\":{:.3},\"slot\":{},\"reason\":\"{}\",\"detail\":{}}}",
            if n > 0 { "," } else { "" },
            unix_seconds(r.at),
            r.slot,
            r.reason.label(),
            json_string(&r.detail)
        );
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn rss_bytes(pid: u32) -> u64 {
    super::control::rss_bytes(pid).unwrap_or(0)
}

/// User plus system CPU seconds of a process, from /proc/PID/stat (0 if it is gone).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    cpu_seconds_of(&stat, rustix::param::clock_ticks_per_second())
}

/// utime and stime are fields 14 and 15; the command name before them may hold spaces,
/// so fields are counted after its closing parenthesis (which is field 2).
fn cpu_seconds_of(stat: &str, ticks_per_second: u64) -> f64 {
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let mut next = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ticks = next() + next();
    ticks as f64 / ticks_per_second.max(1) as f64
}

/// A JSON string literal; `<` is escaped too, so the text is safe inside a `<script>`.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' => out.push_str("\\u003c"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0";
        assert_eq!(cpu_seconds_of(stat, 100), 4.0);
        assert_eq!(cpu_seconds_of("garbage", 100), 0.0);
        assert!(cpu_seconds(std::process::id()) >= 0.0);
    }

    #[test]
    fn json_strings_are_escaped_for_a_script_element() {
        assert_eq!(
            json_string("a\"b\\c\n</script>"),
            "\"a\\\"b\\\\c\\u000a\\u003c/script>\""
        );
    }
}
