//! Rolling reload (SIGHUP): one slot at a time, a new instance started and ready before the
//! old one is told to drain; another SIGHUP during a reload means one more round after it.
//! Recycling (--max-requests, --max-rss, --max-lifetime) replaces one slot the same way.
//!
//! `ReloadPlan` decides the next step from what the slots look like and does nothing else;
//! the launcher's methods below act on its answers. Never more than one slot in flight.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::child::{Instance, Role};
use super::listeners::Listener;
use super::metrics_http::RestartReason;
use super::{Launcher, Phase, Slot};
use crate::log;

/// The new instance of the slot being reloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// None (it exited, or could not be started).
    Missing,
    Starting,
    Ready,
}

/// What the plan needs to know about one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotView {
    pub exists: bool,
    pub given_up: bool,
    /// An old instance serves the slot (one to replace).
    pub has_old: bool,
    pub replacement: Replacement,
}

/// The next thing the launcher does for the reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do now (no reload, or a replacement still starting).
    Wait,
    /// The slot's replacement is ready: make it the slot's instance, drain the old one.
    Promote(usize),
    /// Start a replacement for the slot.
    Start(usize),
    /// Another SIGHUP came during the reload: queue every slot again.
    Again,
}

/// After a replacement failed to start, no recycling for this long (a broken deploy must
/// not make the launcher start a process per tick).
pub const RECYCLE_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default)]
pub struct ReloadPlan {
    queue: VecDeque<usize>,
    /// The slot whose replacement is starting.
    current: Option<usize>,
    /// Another SIGHUP arrived during this reload: go round once more.
    again: bool,
    /// The slots in flight are recycled, not reloaded.
    recycling: bool,
    /// When a replacement last failed to start.
    failed_at: Option<Instant>,
}

impl ReloadPlan {
    /// Replaces one slot (recycling); false when a reload or recycle is under way, or a
    /// replacement failed less than `RECYCLE_BACKOFF` before `now`.
    pub fn recycle(&mut self, slot: usize, now: Instant) -> bool {
        let backing_off = self
            .failed_at
            .is_some_and(|t| now.saturating_duration_since(t) < RECYCLE_BACKOFF);
        if self.under_way() || self.again || backing_off {
            return false;
        }
        self.queue = VecDeque::from([slot]);
        self.recycling = true;
        true
    }

    /// The plan replaces one slot that reached a limit, not every slot for new code.
    pub fn recycling(&self) -> bool {
        self.recycling
    }

    /// "recycle" or "reload", for the log.
    pub fn what(&self) -> &'static str {
        if self.recycling {
            "recycle"
        } else {
            "reload"
        }
    }

    /// A replacement exited before it was ready: the plan stops, the old instances serve on.
    pub fn abandon(&mut self, now: Instant) {
        *self = ReloadPlan {
            failed_at: Some(now),
            ..ReloadPlan::default()
        };
    }

    pub fn under_way(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// Slots not replaced yet in this round: queued, or starting now.
    pub fn remaining(&self) -> usize {
        self.queue.len() + usize::from(self.current.is_some())
    }

    /// A slot is being replaced (for the status report).
    pub fn replacing(&self) -> bool {
        self.current.is_some()
    }

    /// Finished, with no round to follow.
    pub fn finished(&self) -> bool {
        !self.under_way() && !self.again
    }

    /// A SIGHUP: true when a reload of `slots` slots starts now, false when one is under
    /// way and another round is to follow it.
    pub fn request(&mut self, slots: usize) -> bool {
        if self.under_way() {
            self.again = true;
            return false;
        }
        self.queue = (0..slots).collect();
        self.recycling = false;
        true
    }

    /// One slot to replace (`evserve restart`): after the slots already queued.
    pub fn request_slot(&mut self, slot: usize) {
        if self.current != Some(slot) && !self.queue.contains(&slot) {
            self.queue.push_back(slot);
        }
    }

    /// The slot is gone (SIGTTOU): never reload it.
    pub fn forget_slot(&mut self, slot: usize) {
        self.queue.retain(|s| *s != slot);
        if self.current == Some(slot) {
            self.current = None;
        }
    }

    /// Decides the next step; `view` describes a slot.
    pub fn next(&mut self, view: impl Fn(usize) -> SlotView) -> Step {
        if let Some(slot) = self.current {
            match view(slot).replacement {
                Replacement::Ready => {
                    self.current = None;
                    return Step::Promote(slot);
                }
                Replacement::Starting => return Step::Wait,
                Replacement::Missing => self.current = None,
            }
        }
        while let Some(slot) = self.queue.pop_front() {
            let v = view(slot);
            // A slot without an old instance is being restarted anyway: its new process
            // imports the new code.
            if v.exists && !v.given_up && v.has_old {
                self.current = Some(slot);
                return Step::Start(slot);
            }
        }
        if std::mem::take(&mut self.again) {
            return Step::Again;
        }
        self.recycling = false;
        Step::Wait
    }
}

impl Launcher {
    /// SIGHUP, `evserve reload` or `--reload`: what was done, or why nothing was.
    pub(super) fn begin_reload(&mut self) -> Result<String, String> {
        match self.phase {
            Phase::Stopping { .. } => return Err("the launcher is stopping".into()),
            Phase::Starting => {
                log::warn("SIGHUP ignored: the instances are still starting");
                return Err("the instances are still starting; try again".into());
            }
            Phase::Running => {}
        }
        // The new code is imported before any instance is replaced; if it does not
        // import, nothing changes.
        if self.config.preload && !self.replace_preloader() {
            return Err(
                "reload not done: the new code does not import (the launcher's log has the traceback); the running instances keep serving"
                    .into(),
            );
        }
        if self.reload.under_way() {
            log::info("SIGHUP: a reload is under way; another round follows it");
            self.reload.request(self.slots.len());
            self.systemd.reloading(&self.reload_status());
            return Ok("a reload is under way; another round follows it".into());
        }
        self.queue_reload();
        self.systemd.reloading(&self.reload_status());
        Ok(format!(
            "reloading {} one at a time (`evserve status` shows the progress)",
            log::count(self.slots.len(), "instance", "instances")
        ))
    }

    /// Gives given-up slots another chance, reopens their sockets, queues every slot.
    fn queue_reload(&mut self) {
        let mut retried = 0;
        for slot in &mut self.slots {
            if slot.given_up {
                slot.given_up = false;
                slot.history.forget_window();
                retried += 1;
            }
        }
        for entry in &mut self.sockets {
            if entry.listener.is_none() {
                match Listener::bind(&entry.addr, self.config.instance.backlog) {
                    Ok(l) => entry.listener = Some(l),
                    Err(e) => log::error(&format!("reload: {e}")),
                }
            }
        }
        self.reload.request(self.slots.len());
        log::info(&format!(
            "SIGHUP: reloading {} one at a time{}",
            log::count(self.slots.len(), "instance", "instances"),
            if retried > 0 {
                format!(
                    " ({} again)",
                    log::count(
                        retried,
                        "given-up instance is tried",
                        "given-up instances are tried"
                    )
                )
            } else {
                String::new()
            }
        ));
    }

    /// Rolling reload: carries out the plan's steps until it waits.
    pub(super) fn advance_reload(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        // Bounded: a few steps per slot per turn at most.
        for _ in 0..3 * self.slots.len() + 3 {
            let (instances, slots) = (&self.instances, &self.slots);
            match self.reload.next(|slot| slot_view(instances, slots, slot)) {
                Step::Wait => break,
                Step::Promote(slot) => self.promote(slot),
                Step::Start(slot) => self.spawn(slot, Role::Replacing),
                Step::Again => self.queue_reload(),
            }
        }
        if self.systemd.is_reloading() && self.reload.finished() {
            let status = self.ready_status();
            self.systemd.ready(&status);
        }
    }

    /// systemd's STATUS during a reload: `reloading: 2 of 4 replaced`.
    fn reload_status(&self) -> String {
        let total = self.slots.len();
        let done = total.saturating_sub(self.reload.remaining());
        format!("reloading: {done} of {total} replaced")
    }

    /// The slot's replacement takes over; the old instance drains.
    fn promote(&mut self, slot: usize) {
        let now = Instant::now();
        let Some(n) = self
            .instances
            .iter()
            .position(|i| i.slot == slot && i.role == Role::Replacing)
        else {
            return;
        };
        let new_pid = self.instances[n].pid;
        self.instances[n].role = Role::Serving;
        let mut old_pids = Vec::new();
        for (k, inst) in self.instances.iter_mut().enumerate() {
            if k != n && inst.slot == slot && inst.role == Role::Serving {
                old_pids.push(inst.pid.to_string());
                inst.retire(now);
            }
        }
        log::info(&format!(
            "{}: instance {slot} now pid {new_pid}; old pid {} draining",
            self.reload.what(),
            if old_pids.is_empty() {
                "-".to_string()
            } else {
                old_pids.join(",")
            }
        ));
        let reason = if self.reload.recycling() {
            RestartReason::Recycle
        } else {
            RestartReason::Reload
        };
        self.note_restart(slot, reason, &format!("pid {new_pid} in place"));
        if self.reload.finished() && !self.reload.recycling() {
            log::info("reload: done");
        } else {
            self.systemd.status(&self.reload_status());
        }
    }
}

fn slot_view(instances: &[Instance], slots: &[Slot], slot: usize) -> SlotView {
    let replacement = instances
        .iter()
        .find(|i| i.slot == slot && i.role == Role::Replacing);
    SlotView {
        exists: slot < slots.len(),
        given_up: slots.get(slot).is_some_and(|s| s.given_up),
        has_old: instances
            .iter()
            .any(|i| i.slot == slot && i.role == Role::Serving),
        replacement: match replacement {
            None => Replacement::Missing,
            Some(i) if i.ready => Replacement::Ready,
            Some(_) => Replacement::Starting,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_only(_: usize) -> SlotView {
        SlotView {
            exists: true,
            given_up: false,
            has_old: true,
            replacement: Replacement::Missing,
        }
    }

    fn with(replacement: Replacement) -> impl Fn(usize) -> SlotView {
        move |_| SlotView {
            replacement,
            ..old_only(0)
        }
    }

    #[test]
    fn slots_are_replaced_one_at_a_time_in_order() {
        let mut plan = ReloadPlan::default();
        assert!(plan.request(2));
        assert_eq!(plan.next(old_only), Step::Start(0));
        assert_eq!(plan.next(with(Replacement::Starting)), Step::Wait);
        assert_eq!(plan.next(with(Replacement::Ready)), Step::Promote(0));
        assert_eq!(plan.next(old_only), Step::Start(1));
        assert_eq!(plan.next(with(Replacement::Ready)), Step::Promote(1));
        assert!(plan.finished());
        assert_eq!(plan.next(old_only), Step::Wait);
    }

    #[test]
    fn a_sighup_during_a_reload_means_one_more_round() {
        let mut plan = ReloadPlan::default();
        assert!(plan.request(1));
        assert!(!plan.request(1));
        assert!(!plan.request(1));
        assert_eq!(plan.next(old_only), Step::Start(0));
        assert_eq!(plan.next(with(Replacement::Ready)), Step::Promote(0));
        assert!(!plan.finished());
        assert_eq!(plan.next(old_only), Step::Again);
        assert!(plan.finished());
        assert_eq!(plan.next(old_only), Step::Wait);
    }

    #[test]
    fn given_up_missing_and_instanceless_slots_are_skipped() {
        let mut plan = ReloadPlan::default();
        plan.request(4);
        let view = |slot: usize| SlotView {
            exists: slot != 1,
            given_up: slot == 0,
            has_old: slot != 2,
            replacement: Replacement::Missing,
        };
        assert_eq!(plan.next(view), Step::Start(3));
    }

    #[test]
    fn a_replacement_that_died_moves_the_plan_on() {
        let mut plan = ReloadPlan::default();
        plan.request(2);
        assert_eq!(plan.next(old_only), Step::Start(0));
        assert_eq!(plan.next(old_only), Step::Start(1));
    }

    #[test]
    fn recycling_replaces_one_slot_and_never_two_at_once() {
        let t0 = Instant::now();
        let mut plan = ReloadPlan::default();
        assert!(plan.recycle(1, t0));
        assert_eq!(plan.what(), "recycle");
        assert!(
            !plan.recycle(0, t0),
            "a second recycle while one is under way"
        );
        assert_eq!(plan.next(old_only), Step::Start(1));
        assert!(!plan.recycle(0, t0));
        assert_eq!(plan.next(with(Replacement::Ready)), Step::Promote(1));
        assert_eq!(plan.next(old_only), Step::Wait);
        assert_eq!(plan.what(), "reload");
        assert!(plan.recycle(0, t0));
    }

    #[test]
    fn no_recycling_during_a_reload_or_soon_after_a_failed_replacement() {
        let t0 = Instant::now();
        let mut plan = ReloadPlan::default();
        plan.request(2);
        assert!(!plan.recycle(0, t0));
        plan.abandon(t0);
        assert!(!plan.recycle(0, t0 + RECYCLE_BACKOFF / 2));
        assert!(plan.recycle(0, t0 + RECYCLE_BACKOFF));
    }

    #[test]
    fn a_removed_slot_is_never_reloaded() {
        let mut plan = ReloadPlan::default();
        plan.request(3);
        assert_eq!(plan.next(old_only), Step::Start(0));
        plan.forget_slot(0);
        plan.forget_slot(1);
        assert_eq!(plan.next(old_only), Step::Start(2));
    }
}
