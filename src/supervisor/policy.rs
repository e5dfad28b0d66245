//! The launcher's decisions as pure functions of the time: when an instance counts as hung,
//! when a crashing process is restarted or given up (instances and nginx alike), and which
//! endings count toward that limit: crash loops and boot failures do; a --timeout kill or a
//! clean exit never does (the instance is always replaced).
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
        Role::Serving | Role::Replacing if is_hung(ready, last_heard, deadlines.timeout, now) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

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
