//! The launcher's decisions as pure functions of the time: when an instance counts as hung,
//! when a crashing process is restarted or given up (instances and nginx alike), and which
//! endings count toward that limit: crash loops and boot failures do; a --timeout kill or a
//! clean exit never does (the instance is always replaced). Also when an instance is due
//! for recycling (--max-requests, --max-rss, --max-lifetime), and when the pool grows or
//! shrinks (--workers MIN:MAX).
//!
//! Never reads the clock, never signals or spawns anything: the caller passes `now` and
//! acts on the answer, so every rule is unit-tested with made-up times.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::child::Role;
use crate::contract::HEARTBEAT_INTERVAL;

/// Whether an instance last heard from at `last_heard` is to be killed at `now`.
///
/// Before its `ready`, `last_heard` is its start and it gets `timeout` to become ready.
/// Once ready, a request stuck in the app started at most `HEARTBEAT_INTERVAL` after its
/// last heartbeat (see `contract::HEARTBEAT_INTERVAL`), so it is killed `timeout` plus that
/// interval after it: never before the stuck request has run `timeout`, at most one
/// interval (and a launcher tick) later.
pub fn is_hung(ready: bool, last_heard: Instant, timeout: Duration, now: Instant) -> bool {
    let allowed = if ready {
        timeout + HEARTBEAT_INTERVAL
    } else {
        timeout
    };
    now.saturating_duration_since(last_heard) > allowed
}

/// How long an instance may go without a sign of life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// --timeout.
    pub timeout: Duration,
    /// How long a retiring instance may drain before it is killed.
    pub drain: Duration,
}

/// Why an instance is to be killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overdue {
    /// Ready, but its loop has not turned for --timeout (stuck in a request).
    Stuck,
    /// Never became ready within --timeout.
    NotReady,
    /// Told to drain, still there after the drain limit.
    Draining,
}

/// Whether an instance in `role` is past its deadline at `now`.
pub fn overdue(
    role: Role,
    ready: bool,
    last_heard: Instant,
    deadlines: Deadlines,
    now: Instant,
) -> Option<Overdue> {
    match role {
        Role::Serving | Role::Replacing | Role::Leaving { .. }
            if is_hung(ready, last_heard, deadlines.timeout, now) =>
        {
            Some(if ready {
                Overdue::Stuck
            } else {
                Overdue::NotReady
            })
        }
        Role::Retiring { since } if now.saturating_duration_since(since) > deadlines.drain => {
            Some(Overdue::Draining)
        }
        // A draining instance's loop still turns and beats: one stuck in a request is no
        // less stuck for draining.
        Role::Retiring { .. } if ready && is_hung(ready, last_heard, deadlines.timeout, now) => {
            Some(Overdue::Stuck)
        }
        _ => None,
    }
}

/// `--max-restarts` within `--restart-window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    pub max_restarts: u32,
    pub window: Duration,
}

/// What to do after an unexpected exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Restart it; this is restart number `nth` within the window.
    Restart { nth: usize },
    /// Too many restarts within the window: `restarts` already happened there.
    GiveUp { restarts: usize },
}

/// How a ready, serving instance ended, as far as `--max-restarts` cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Killed by `--timeout` while stuck in a request: a request is at fault, not the app's
    /// start-up; always replaced, never counted.
    TimedOut,
    /// Exited with code 0 (stopped on purpose, e.g. an operator's SIGTERM): always
    /// restarted, never counted.
    Clean,
    /// Crashed, was killed by someone else, or exited non-zero: counted.
    Failed,
}

/// What to do after an instance ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start a new one; this ending does not count toward `--max-restarts`.
    Replace,
    /// A counted failure, and the restart limit's answer.
    Counted(Verdict),
}

/// The restarts of one process (an instance slot, or nginx).
#[derive(Clone, Debug, Default)]
pub struct RestartHistory {
    within_window: VecDeque<Instant>,
    /// Every restart since the launcher started.
    pub total: u32,
}

impl RestartHistory {
    /// Decides on an unexpected exit at `now` and records the restart it allows.
    pub fn on_failure(&mut self, policy: RestartPolicy, now: Instant) -> Verdict {
        while self
            .within_window
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > policy.window)
        {
            self.within_window.pop_front();
        }
        if self.within_window.len() >= policy.max_restarts as usize {
            return Verdict::GiveUp {
                restarts: self.within_window.len(),
            };
        }
        self.within_window.push_back(now);
        self.total += 1;
        Verdict::Restart {
            nth: self.within_window.len(),
        }
    }

    /// Decides on the end of an instance at `now`: only failures count toward the limit.
    pub fn on_exit(&mut self, ending: Ending, policy: RestartPolicy, now: Instant) -> Decision {
        match ending {
            Ending::TimedOut | Ending::Clean => {
                self.total += 1;
                Decision::Replace
            }
            Ending::Failed => Decision::Counted(self.on_failure(policy, now)),
        }
    }

    /// A fresh start (SIGHUP retries a given-up process): the window is forgotten.
    pub fn forget_window(&mut self) {
        self.within_window.clear();
    }
}

/// `--max-requests`, `--max-rss` and `--max-lifetime`, with their jitter; zero is off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecycleRules {
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// Bytes of resident memory.
    pub max_rss: u64,
    pub max_lifetime: Duration,
    pub max_lifetime_jitter: Duration,
}

/// The limits of one instance, its jitter drawn when it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecycleLimits {
    pub requests: Option<u64>,
    pub rss: Option<u64>,
    pub lifetime: Option<Duration>,
}

impl RecycleRules {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_requests > 0 || self.max_rss > 0 || !self.max_lifetime.is_zero()
    }

    /// One instance's limits; `draw(n)` is a random number in `0..=n` (gunicorn's
    /// `randint(0, jitter)`).
    pub fn limits(&self, mut draw: impl FnMut(u64) -> u64) -> RecycleLimits {
        let requests =
            (self.max_requests > 0).then(|| self.max_requests + draw(self.max_requests_jitter));
        let lifetime = (!self.max_lifetime.is_zero()).then(|| {
            let jitter_ms = u64::try_from(self.max_lifetime_jitter.as_millis()).unwrap_or(0);
            self.max_lifetime + Duration::from_millis(draw(jitter_ms))
        });
        RecycleLimits {
            requests,
            rss: (self.max_rss > 0).then_some(self.max_rss),
            lifetime,
        }
    }
}

/// Why an instance is recycled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecycleReason {
    Requests { served: u64 },
    Rss { bytes: u64, limit: u64 },
    Lifetime { age: Duration },
}

impl std::fmt::Display for RecycleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MIB: f64 = 1024.0 * 1024.0;
        match self {
            RecycleReason::Requests { served } => write!(f, "served {served} requests"),
            RecycleReason::Rss { bytes, limit } => write!(
                f,
                "uses {:.1} MiB of memory (--max-rss {:.0} MiB)",
                *bytes as f64 / MIB,
                *limit as f64 / MIB
            ),
            RecycleReason::Lifetime { age } => write!(f, "has run {}s", age.as_secs()),
        }
    }
}

/// Whether an instance with these limits, having served `served` requests, using `rss`
/// bytes and started at `started`, is to be recycled at `now`.
pub fn recycle_reason(
    limits: &RecycleLimits,
    served: u64,
    rss: Option<u64>,
    started: Instant,
    now: Instant,
) -> Option<RecycleReason> {
    if limits.requests.is_some_and(|limit| served >= limit) {
        return Some(RecycleReason::Requests { served });
    }
    if let (Some(limit), Some(bytes)) = (limits.rss, rss) {
        if bytes > limit {
            return Some(RecycleReason::Rss { bytes, limit });
        }
    }
    let age = now.saturating_duration_since(started);
    limits
        .lifetime
        .is_some_and(|limit| age >= limit)
        .then_some(RecycleReason::Lifetime { age })
}

/// A heartbeat at or above this share of busy time (in thousandths) means the instance had
/// a request to work on the whole interval.
pub const BUSY_PERMILLE: u16 = 900;
/// The pool shrinks when the others could carry the load at this share of their time.
pub const SPARE_SHARE: f64 = 0.5;

/// When an instance has been busy since: set by a busy heartbeat (from the interval it
/// covers), cleared by one that is not. A silent instance is inside a request (its loop
/// beats at least every `HEARTBEAT_INTERVAL` while it turns): busy since its last word.
pub fn busy_since(reported: Option<Instant>, last_heard: Instant, now: Instant) -> Option<Instant> {
    if now.saturating_duration_since(last_heard) > 2 * HEARTBEAT_INTERVAL {
        return Some(reported.map_or(last_heard, |r| r.min(last_heard)));
    }
    reported
}

/// `--workers MIN:MAX` (or `--min-instances` with `--port-range`) and its delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleRules {
    pub min: usize,
    pub max: usize,
    pub up_after: Duration,
    pub down_after: Duration,
}

impl ScaleRules {
    pub fn autoscaling(&self) -> bool {
        self.min < self.max
    }
}

/// What one live, ready instance reports for scaling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceLoad {
    pub busy_since: Option<Instant>,
    /// Share of its last heartbeat interval spent working, 0.0 to 1.0.
    pub share: f64,
}

/// A change of the instance count, with its reason for the log and the status.
#[derive(Clone, Debug, PartialEq)]
pub enum Scale {
    Hold,
    Grow(String),
    Shrink(String),
}

/// The autoscaler's memory between decisions: since when the pool had a spare instance.
#[derive(Clone, Debug, Default)]
pub struct ScaleWatch {
    spare_since: Option<Instant>,
}

impl ScaleWatch {
    /// Decides at `now` for a pool of `target` instances, `loads` those of them ready (a
    /// pool still starting or replacing an instance is left alone).
    pub fn decide(
        &mut self,
        rules: &ScaleRules,
        target: usize,
        loads: &[InstanceLoad],
        now: Instant,
    ) -> Scale {
        if loads.len() != target || target == 0 {
            self.spare_since = None;
            return Scale::Hold;
        }
        let busy_for = |l: &InstanceLoad| {
            l.busy_since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
        };
        let all_busy_for = loads.iter().map(busy_for).min().unwrap_or_default();
        if target < rules.max && all_busy_for >= rules.up_after {
            self.spare_since = None;
            return Scale::Grow(format!(
                "every instance has been busy for {:.1}s (--scale-up-after {}s)",
                all_busy_for.as_secs_f64(),
                rules.up_after.as_secs_f64()
            ));
        }
        let total: f64 = loads.iter().map(|l| l.share).sum();
        let spare = target > rules.min && total <= (target - 1) as f64 * SPARE_SHARE;
        if !spare {
            self.spare_since = None;
            return Scale::Hold;
        }
        let since = *self.spare_since.get_or_insert(now);
        let idle_for = now.saturating_duration_since(since);
        if idle_for < rules.down_after {
            return Scale::Hold;
        }
        self.spare_since = None;
        Scale::Shrink(format!(
            "load {:.0}% of one instance for {}s fits in one instance fewer (--scale-down-after {}s)",
            total * 100.0,
            idle_for.as_secs(),
            rules.down_after.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    const MS: Duration = Duration::from_millis(1);

    fn rules(max_requests: u64, jitter: u64) -> RecycleRules {
        RecycleRules {
            max_requests,
            max_requests_jitter: jitter,
            ..RecycleRules::default()
        }
    }

    #[test]
    fn max_requests_jitter_is_added_as_gunicorn_does() {
        assert_eq!(rules(1000, 50).limits(|n| n).requests, Some(1050));
        assert_eq!(rules(1000, 50).limits(|_| 0).requests, Some(1000));
        assert_eq!(rules(0, 50).limits(|n| n).requests, None);
        assert!(!RecycleRules::default().any());
        let lifetime = RecycleRules {
            max_lifetime: 10 * S,
            max_lifetime_jitter: 2 * S,
            ..RecycleRules::default()
        };
        assert_eq!(lifetime.limits(|n| n).lifetime, Some(12 * S));
    }

    #[test]
    fn each_limit_gives_its_reason() {
        let t0 = Instant::now();
        let limits = RecycleLimits {
            requests: Some(100),
            rss: Some(50 << 20),
            lifetime: Some(60 * S),
        };
        assert_eq!(recycle_reason(&limits, 99, Some(1 << 20), t0, t0 + S), None);
        let served = recycle_reason(&limits, 100, None, t0, t0).unwrap();
        assert_eq!(served.to_string(), "served 100 requests");
        let rss = recycle_reason(&limits, 0, Some(60 << 20), t0, t0).unwrap();
        assert_eq!(
            rss.to_string(),
            "uses 60.0 MiB of memory (--max-rss 50 MiB)"
        );
        let old = recycle_reason(&limits, 0, None, t0, t0 + 61 * S).unwrap();
        assert_eq!(old.to_string(), "has run 61s");
        assert_eq!(
            recycle_reason(
                &RecycleLimits::default(),
                u64::MAX,
                Some(u64::MAX),
                t0,
                t0 + 1000 * S
            ),
            None
        );
    }

    #[test]
    fn a_silent_instance_counts_as_busy_since_its_last_heartbeat() {
        let t0 = Instant::now();
        assert_eq!(busy_since(None, t0, t0 + 500 * MS), None);
        assert_eq!(busy_since(None, t0, t0 + 1001 * MS), Some(t0));
        assert_eq!(busy_since(Some(t0), t0 + S, t0 + 3 * S), Some(t0));
        assert_eq!(busy_since(Some(t0), t0 + S, t0 + S), Some(t0));
    }

    const SCALE: ScaleRules = ScaleRules {
        min: 1,
        max: 3,
        up_after: Duration::from_secs(1),
        down_after: Duration::from_secs(30),
    };

    fn load(busy_since: Option<Instant>, share: f64) -> InstanceLoad {
        InstanceLoad { busy_since, share }
    }

    #[test]
    fn the_pool_grows_only_when_every_instance_was_busy_long_enough() {
        let t0 = Instant::now();
        let mut watch = ScaleWatch::default();
        let busy = load(Some(t0), 1.0);
        let idle = load(None, 0.1);
        assert_eq!(
            watch.decide(&SCALE, 2, &[busy, busy], t0 + 500 * MS),
            Scale::Hold
        );
        assert!(matches!(
            watch.decide(&SCALE, 2, &[busy, busy], t0 + S),
            Scale::Grow(_)
        ));
        assert_eq!(
            watch.decide(&SCALE, 2, &[busy, idle], t0 + 5 * S),
            Scale::Hold
        );
        // Never above MAX, never while an instance is still starting.
        assert_eq!(watch.decide(&SCALE, 3, &[busy; 3], t0 + 5 * S), Scale::Hold);
        assert_eq!(watch.decide(&SCALE, 2, &[busy], t0 + 5 * S), Scale::Hold);
    }

    #[test]
    fn the_pool_shrinks_after_a_spare_instance_was_idle_long_enough() {
        let t0 = Instant::now();
        let mut watch = ScaleWatch::default();
        let light = [load(None, 0.2), load(None, 0.2)];
        assert_eq!(watch.decide(&SCALE, 2, &light, t0), Scale::Hold);
        assert_eq!(watch.decide(&SCALE, 2, &light, t0 + 29 * S), Scale::Hold);
        let shrink = watch.decide(&SCALE, 2, &light, t0 + 30 * S);
        assert!(
            matches!(&shrink, Scale::Shrink(why) if why.contains("40%")),
            "{shrink:?}"
        );
        // The wait starts again after a shrink, and after load comes back.
        assert_eq!(watch.decide(&SCALE, 2, &light, t0 + 31 * S), Scale::Hold);
        let heavy = [load(None, 0.6), load(None, 0.6)];
        assert_eq!(watch.decide(&SCALE, 2, &heavy, t0 + 40 * S), Scale::Hold);
        assert_eq!(watch.decide(&SCALE, 2, &light, t0 + 41 * S), Scale::Hold);
        assert_eq!(watch.decide(&SCALE, 2, &light, t0 + 70 * S), Scale::Hold);
        assert!(matches!(
            watch.decide(&SCALE, 2, &light, t0 + 71 * S),
            Scale::Shrink(_)
        ));
        // Never below MIN.
        let one = [load(None, 0.0)];
        assert_eq!(watch.decide(&SCALE, 1, &one, t0 + 100 * S), Scale::Hold);
        assert_eq!(watch.decide(&SCALE, 1, &one, t0 + 200 * S), Scale::Hold);
    }

    #[test]
    fn a_ready_instance_is_hung_only_after_timeout_plus_one_interval() {
        let t0 = Instant::now();
        let timeout = 2 * S;
        assert!(!is_hung(true, t0, timeout, t0 + timeout));
        assert!(!is_hung(
            true,
            t0,
            timeout,
            t0 + timeout + HEARTBEAT_INTERVAL
        ));
        assert!(is_hung(
            true,
            t0,
            timeout,
            t0 + timeout + HEARTBEAT_INTERVAL + Duration::from_millis(1)
        ));
    }

    #[test]
    fn a_starting_instance_gets_timeout_to_become_ready() {
        let t0 = Instant::now();
        assert!(!is_hung(false, t0, 3 * S, t0 + 3 * S));
        assert!(is_hung(
            false,
            t0,
            3 * S,
            t0 + 3 * S + Duration::from_millis(1)
        ));
        // A clock read before `last_heard` (messages read after `now`) is not hung.
        assert!(!is_hung(true, t0 + S, S, t0));
    }

    #[test]
    fn overdue_tells_stuck_from_never_ready_from_draining_too_long() {
        let t0 = Instant::now();
        let d = Deadlines {
            timeout: 2 * S,
            drain: 5 * S,
        };
        let late = t0 + 3 * S;
        assert_eq!(
            overdue(Role::Serving, true, t0, d, late),
            Some(Overdue::Stuck)
        );
        assert_eq!(
            overdue(Role::Replacing, false, t0, d, late),
            Some(Overdue::NotReady)
        );
        assert_eq!(overdue(Role::Serving, true, t0, d, t0 + S), None);
        let retiring = Role::Retiring { since: t0 };
        // Bug pinned: a draining instance stuck in a request ran until the drain limit
        // (--graceful-timeout) instead of --timeout.
        assert_eq!(overdue(retiring, true, t0, d, late), Some(Overdue::Stuck));
        assert_eq!(overdue(retiring, true, t0 + 2 * S, d, late), None);
        assert_eq!(
            overdue(retiring, true, t0, d, t0 + 6 * S),
            Some(Overdue::Draining)
        );
    }

    #[test]
    fn restarts_are_allowed_up_to_the_limit_then_given_up() {
        let policy = RestartPolicy {
            max_restarts: 2,
            window: 60 * S,
        };
        let t0 = Instant::now();
        let mut h = RestartHistory::default();
        assert_eq!(h.on_failure(policy, t0), Verdict::Restart { nth: 1 });
        assert_eq!(h.on_failure(policy, t0 + S), Verdict::Restart { nth: 2 });
        assert_eq!(
            h.on_failure(policy, t0 + 2 * S),
            Verdict::GiveUp { restarts: 2 }
        );
        assert_eq!(h.total, 2);
    }

    #[test]
    fn restarts_older_than_the_window_no_longer_count() {
        let policy = RestartPolicy {
            max_restarts: 1,
            window: 10 * S,
        };
        let t0 = Instant::now();
        let mut h = RestartHistory::default();
        assert_eq!(h.on_failure(policy, t0), Verdict::Restart { nth: 1 });
        assert_eq!(
            h.on_failure(policy, t0 + 10 * S),
            Verdict::GiveUp { restarts: 1 }
        );
        assert_eq!(
            h.on_failure(policy, t0 + 11 * S),
            Verdict::Restart { nth: 1 }
        );
        assert_eq!(h.total, 2);
    }

    #[test]
    fn forgetting_the_window_allows_restarts_again() {
        let policy = RestartPolicy {
            max_restarts: 1,
            window: 60 * S,
        };
        let t0 = Instant::now();
        let mut h = RestartHistory::default();
        h.on_failure(policy, t0);
        assert!(matches!(h.on_failure(policy, t0), Verdict::GiveUp { .. }));
        h.forget_window();
        assert_eq!(h.on_failure(policy, t0), Verdict::Restart { nth: 1 });
    }

    #[test]
    fn timeout_kills_never_count_toward_max_restarts() {
        // Bug: two stuck requests with --max-restarts 1 gave the only instance up.
        let policy = RestartPolicy {
            max_restarts: 1,
            window: 60 * S,
        };
        let t0 = Instant::now();
        let mut h = RestartHistory::default();
        for n in 0..10 {
            assert_eq!(
                h.on_exit(Ending::TimedOut, policy, t0 + n * S),
                Decision::Replace
            );
        }
        // The window is still empty: the first crash is restart 1 of 1.
        assert_eq!(
            h.on_exit(Ending::Failed, policy, t0 + 10 * S),
            Decision::Counted(Verdict::Restart { nth: 1 })
        );
        assert_eq!(h.total, 11);
    }

    #[test]
    fn clean_exits_never_count_toward_max_restarts() {
        // Bug: an instance that exited 0 after an operator's SIGTERM used up a restart.
        let policy = RestartPolicy {
            max_restarts: 0,
            window: 60 * S,
        };
        let t0 = Instant::now();
        let mut h = RestartHistory::default();
        assert_eq!(h.on_exit(Ending::Clean, policy, t0), Decision::Replace);
        assert_eq!(h.on_exit(Ending::Clean, policy, t0), Decision::Replace);
        assert_eq!(
            h.on_exit(Ending::Failed, policy, t0),
            Decision::Counted(Verdict::GiveUp { restarts: 0 })
        );
    }

    #[test]
    fn zero_restarts_gives_up_at_the_first_failure() {
        let policy = RestartPolicy {
            max_restarts: 0,
            window: 60 * S,
        };
        let mut h = RestartHistory::default();
        assert_eq!(
            h.on_failure(policy, Instant::now()),
            Verdict::GiveUp { restarts: 0 }
        );
    }
}
