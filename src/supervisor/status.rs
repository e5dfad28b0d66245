//! The launcher's status report, the text `evserve status` prints: the launcher's state and
//! one row per instance (and per given-up slot).
//!
//! Reads the launcher's state only; changes nothing.

use std::fmt::Write as _;
use std::time::Instant;

use super::child::{Instance, Role};
use super::{control, Launcher, Phase};

impl Launcher {
    pub(super) fn status_report(&self) -> String {
        let now = Instant::now();
        let mut out = self.status_headline(now);
        control::table_row(
            &mut out,
            [
                "INST", "PID", "PORT", "STATE", "RESTARTS", "UPTIME", "REQUESTS", "CONNS", "RSS",
            ]
            .map(String::from),
        );
        let mut rows: Vec<&Instance> = self.instances.iter().collect();
        rows.sort_by_key(|i| (i.slot, i.started));
        for inst in rows {
            control::table_row(&mut out, self.instance_row(inst, now));
        }
        for (index, slot) in self.slots.iter().enumerate() {
            if slot.given_up {
                let mut cells = ["-"; 9].map(String::from);
                cells[0] = index.to_string();
                cells[2] = self.slot_port(index);
                cells[3] = "given-up".into();
                cells[4] = slot.history.total.to_string();
                control::table_row(&mut out, cells);
            }
        }
        out
    }

    /// The launcher's state as the status report names it.
    pub(super) fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Starting => "starting",
            Phase::Running if self.reload.replacing() && self.reload.recycling() => "recycling",
            Phase::Running if self.reload.replacing() => "reloading",
            Phase::Running => "running",
            Phase::Stopping { .. } => "stopping",
        }
    }

    /// `evserve launcher pid 12: app:application on 127.0.0.1:8001-8004, running, up 3m12s`.
    fn status_headline(&self, now: Instant) -> String {
        let phase = self.phase_name();
        let mut out = format!(
            "evserve launcher pid {}: {} on {}, {phase}, up {}",
            std::process::id(),
            self.config.instance.app.text,
            self.where_text(),
            control::human_duration(now.duration_since(self.started))
        );
        if let Some(nginx) = &self.nginx {
            let _ = write!(out, "; nginx {}", nginx.describe());
        }
        out.push('\n');
        out.push_str(&self.elastic_status(now));
        out
    }

    fn instance_row(&self, inst: &Instance, now: Instant) -> [String; 9] {
        let state = state_name(inst);
        let restarts = self.slots.get(inst.slot).map_or(0, |s| s.history.total);
        [
            inst.slot.to_string(),
            inst.pid.to_string(),
            self.slot_port(inst.slot),
            state.to_string(),
            restarts.to_string(),
            control::human_duration(now.duration_since(inst.started)),
            inst.requests.to_string(),
            inst.connections.to_string(),
            control::human_bytes(control::rss_bytes(inst.pid)),
        ]
    }
}

/// An instance's state as the report (and the metrics) name it.
pub(super) fn state_name(inst: &Instance) -> &'static str {
    match inst.role {
        Role::Retiring { .. } => "draining",
        Role::Leaving { .. } => "leaving",
        Role::Replacing if inst.ready => "ready",
        Role::Replacing => "reloading",
        Role::Serving if inst.ready => "ready",
        Role::Serving => "starting",
    }
}
