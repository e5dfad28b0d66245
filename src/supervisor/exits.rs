//! What an instance's exit means (a drained instance, a failed reload, an import error at
//! start, a crash to restart or give up on), and the deadlines that end instances: stuck
//! or never ready (--timeout), draining too long, the launcher's own stop running out.
//!
//! The decisions themselves are `policy`'s pure functions; this file acts on them.

use std::time::Instant;

use super::child::{describe_exit, Instance, Role};
use super::metrics_http::RestartReason;
use super::policy::{overdue, Deadlines, Decision, Ending, Overdue, RestartPolicy, Verdict};
use super::{Launcher, Phase, DRAIN_MARGIN, SPAWNS_PER_TURN};
use crate::contract::ExitCode;
use crate::log;

impl Launcher {
    /// Collects exited instances and decides what each exit means.
    pub(super) fn reap(&mut self) {
        let mut i = 0;
        while i < self.instances.len() {
            match self.instances[i].try_exit() {
                Some(status) => {
                    let mut inst = self.instances.remove(i);
                    // Messages sent just before exiting (a late `ready`) still count.
                    inst.read_messages();
                    self.unwatch(inst.control_fd());
                    self.note_exit(&inst);
                    self.on_exit(inst, status);
                }
                None => i += 1,
            }
        }
        self.reap_preloaders();
        if let Some(nginx) = &mut self.nginx {
            if let Some(message) = nginx.reap(matches!(self.phase, Phase::Stopping { .. })) {
                if self.phase == Phase::Starting || !self.announced {
                    self.abort_start(1, &message);
                } else {
                    log::error(&message);
                }
            }
        }
    }

    fn on_exit(&mut self, inst: Instance, status: std::process::ExitStatus) {
        let slot = inst.slot;
        let what = describe_exit(status);
        let import_error =
            status.code().and_then(ExitCode::from_code) == Some(ExitCode::AppLoadFailure);
        match inst.role {
            Role::Retiring { .. } | Role::Leaving { .. } => {
                log::info(&format!(
                    "instance {slot} (pid {}) stopped: {what}",
                    inst.pid
                ));
            }
            Role::Replacing => {
                let why = if import_error {
                    "the reloaded app fails to import (traceback above)".to_string()
                } else {
                    format!("its new process {what} before it was ready")
                };
                log::error(&format!(
                    "{} stopped at instance {slot}: {why}; the running instances keep serving",
                    self.reload.what()
                ));
                self.reload.abandon(Instant::now());
            }
            Role::Serving => match self.phase {
                Phase::Stopping { .. } => {}
                Phase::Starting => self.on_exit_at_start(&inst, what, import_error),
                Phase::Running => {
                    if slot < self.slots.len() {
                        let (ending, why) = self.ending_of(&inst, status, what, import_error);
                        self.count_exit(slot, ending, &format!("pid {}: {why}", inst.pid));
                    }
                }
            },
        }
    }

    /// How a serving instance ended, and the words for it.
    fn ending_of(
        &self,
        inst: &Instance,
        status: std::process::ExitStatus,
        what: String,
        import_error: bool,
    ) -> (Ending, String) {
        if inst.hung && inst.ready {
            let timeout = self.config.timeout.as_secs();
            let why = format!("was stuck in a request for {timeout}s and was killed (--timeout)");
            (Ending::TimedOut, why)
        } else if inst.hung {
            (
                Ending::Failed,
                "did not become ready within --timeout".into(),
            )
        } else if import_error {
            (Ending::Failed, format!("{what}: the app fails to import"))
        } else if status.code() == Some(0) && inst.ready {
            (Ending::Clean, what)
        } else {
            (Ending::Failed, what)
        }
    }

    /// An instance that exited before the launcher was ready: the launcher stops.
    fn on_exit_at_start(&mut self, inst: &Instance, what: String, import_error: bool) {
        if import_error {
            self.abort_start(
                ExitCode::AppLoadFailure.code(),
                &format!(
                    "the app {} failed to import (traceback above); not starting",
                    self.config.instance.app.text
                ),
            );
            return;
        }
        let why = if inst.hung {
            format!(
                "did not become ready within --timeout {}s",
                self.config.timeout.as_secs()
            )
        } else {
            what
        };
        self.abort_start(
            1,
            &format!(
                "instance {} (pid {}) {why} at start; not starting",
                inst.slot, inst.pid
            ),
        );
    }

    /// Records the end of `slot`'s instance: replaces it, or counts a failure and gives the
    /// slot up past the limit.
    pub(super) fn count_exit(&mut self, slot: usize, ending: Ending, why: &str) {
        let policy = self.restart_policy();
        let window = policy.window.as_secs();
        let max = policy.max_restarts;
        let port = self.slot_port(slot);
        let decision = self.slots[slot]
            .history
            .on_exit(ending, policy, Instant::now());
        if !matches!(decision, Decision::Counted(Verdict::GiveUp { .. })) {
            self.note_restart(slot, RestartReason::of(ending), why);
        }
        match decision {
            Decision::Replace => log::warn(&format!(
                "instance {slot} (port {port}, {why}); starting a new one ({} never counts toward --max-restarts)",
                match ending {
                    Ending::TimedOut => "a --timeout kill",
                    _ => "a clean exit",
                }
            )),
            Decision::Counted(Verdict::Restart { nth }) => log::warn(&format!(
                "instance {slot} (port {port}, {why}); restarting it ({nth} of {max} restarts within {window}s)"
            )),
            Decision::Counted(Verdict::GiveUp { restarts }) => {
                self.slots[slot].given_up = true;
                log::error(&format!(
                    "instance {slot} (port {port}, {why}); it was restarted {} within {window}s \
                     (--max-restarts {max} per --restart-window {window}s): not restarting it; \
                     fix the app and send SIGHUP to try again",
                    log::times(restarts),
                ));
                self.close_unused_sockets();
                if self.slots.iter().all(|s| s.given_up) {
                    self.begin_stop(1, "every instance was given up");
                }
            }
        }
    }

    fn restart_policy(&self) -> RestartPolicy {
        RestartPolicy {
            max_restarts: self.config.max_restarts,
            window: self.config.restart_window,
        }
    }

    /// Closes sockets no live slot uses, so clients (and nginx) are refused at once instead
    /// of waiting in a backlog nobody accepts from.
    fn close_unused_sockets(&mut self) {
        for (index, entry) in self.sockets.iter_mut().enumerate() {
            let used = self.slots.iter().any(|s| s.socket == index && !s.given_up);
            // systemd's sockets stay: it keeps them open anyway, and they cannot be bound again.
            if !used && entry.listener.as_ref().is_some_and(|l| !l.activated) {
                log::warn(&format!("closing {} (no instance left on it)", entry.addr));
                entry.listener = None;
            }
        }
    }

    /// Kills instances past a deadline: stuck or never ready (--timeout), draining too
    /// long, or still there when the launcher's own stop ran out of time.
    pub(super) fn check_deadlines(&mut self) {
        let now = Instant::now();
        let deadlines = Deadlines {
            timeout: self.config.timeout,
            drain: self.config.instance.timeouts.graceful + DRAIN_MARGIN,
        };
        let timeout = deadlines.timeout.as_secs();
        for inst in &mut self.instances {
            if inst.killed {
                continue;
            }
            let Some(why) = overdue(inst.role, inst.ready, inst.last_heard, deadlines, now) else {
                continue;
            };
            let what = match why {
                Overdue::Stuck => format!(
                    "has been stuck for {timeout}s (no heartbeat: a request still running?); killing it (--timeout)"
                ),
                Overdue::NotReady => {
                    format!("did not become ready within {timeout}s; killing it (--timeout)")
                }
                Overdue::Draining => {
                    "did not finish draining within --graceful-timeout; killing it".to_string()
                }
            };
            let line = format!("instance {} (pid {}) {what}", inst.slot, inst.pid);
            if why == Overdue::Draining {
                log::warn(&line);
            } else {
                log::error(&line);
                inst.hung = true;
            }
            inst.kill();
        }
        if let Phase::Stopping { deadline, .. } = self.phase {
            if now >= deadline {
                self.kill_the_rest();
            }
        }
    }

    /// The launcher's stop ran out of --graceful-timeout.
    fn kill_the_rest(&mut self) {
        for inst in &mut self.instances {
            if !inst.killed {
                log::warn(&format!(
                    "instance {} (pid {}) still running at the end of --graceful-timeout; killing it",
                    inst.slot, inst.pid
                ));
                inst.kill();
            }
        }
        if let Some(nginx) = &mut self.nginx {
            nginx.kill();
        }
    }

    /// Starts an instance for every slot that has none (and is not given up), at most
    /// `SPAWNS_PER_TURN` per call so the loop reads signals between them; returns whether
    /// slots are still waiting for one. At start, instance 0 imports the app alone and the
    /// others follow once it is ready: an app that fails to import shows one traceback, not
    /// one per instance, and stops the launcher.
    pub(super) fn respawn(&mut self) -> bool {
        if matches!(self.phase, Phase::Stopping { .. }) {
            return false;
        }
        let first_ready = self.instances.iter().any(|i| i.slot == 0 && i.ready);
        let slots = if self.phase == Phase::Starting && !first_ready {
            1.min(self.slots.len())
        } else {
            self.slots.len()
        };
        let mut spawned = 0;
        for slot in 0..slots {
            if self.slots[slot].given_up || self.is_covered(slot) {
                continue;
            }
            if spawned == SPAWNS_PER_TURN {
                return true;
            }
            self.spawn(slot, Role::Serving);
            spawned += 1;
        }
        false
    }

    /// Whether `slot` has a process serving it or about to.
    fn is_covered(&self, slot: usize) -> bool {
        self.instances
            .iter()
            .any(|i| i.slot == slot && matches!(i.role, Role::Serving | Role::Replacing))
    }
}
