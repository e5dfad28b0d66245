//! The launcher's side of the control console: one handler per `control::Request`, each
//! doing what the matching signal or subcommand means and answering with what it did, or
//! why it did nothing. Also `--reload`'s trigger and `evserve status --json`.
//!
//! Handlers act through the launcher's own paths (rolling reload, graceful stop, the
//! signal handlers), never around them; nothing here blocks.

use std::time::Instant;

use rustix::process::{kill_process, Pid, Signal};
use serde_json::{json, Value};

use super::child::{Instance, Role};
use super::control::{self, Reply, Request};
use super::signals::{self, Request as SignalRequest};
use super::{Launcher, Phase};
use crate::log;

impl Launcher {
    /// Answers every waiting client of the control socket.
    pub(super) fn serve_control(&mut self) {
        for pending in self.control.accept() {
            let reply = match pending.request.clone() {
                Ok(request) => self.answer(request),
                Err(e) => Err(e),
            };
            pending.answer(reply);
        }
    }

    fn answer(&mut self, request: Request) -> Reply {
        match request {
            Request::Status { json: false } => Ok(self.status_report()),
            Request::Status { json: true } => Ok(format!("{}\n", self.status_json())),
            Request::Reload => {
                log::info("reload requested (evserve reload)");
                self.begin_reload()
            }
            Request::Restart { instance } => self.restart_instance(instance),
            Request::Signal { signal, instance } => match instance {
                Some(slot) => self.signal_instance(signal, slot),
                None => self.signal_self(signal),
            },
            Request::Stop => self.stop_by_request(),
            Request::Scale(count) => self.scale_command(&count),
        }
    }

    /// The slot's serving process, or why there is none to act on.
    fn serving_instance(&self, slot: usize) -> Result<&Instance, String> {
        if slot >= self.slots.len() {
            return Err(format!(
                "no instance {slot}: this launcher has instances 0 to {}",
                self.slots.len().saturating_sub(1)
            ));
        }
        if self.slots[slot].given_up {
            return Err(format!(
                "instance {slot} was given up (it kept failing); `evserve reload` tries it again"
            ));
        }
        self.instances
            .iter()
            .find(|i| i.slot == slot && i.role == Role::Serving)
            .ok_or_else(|| format!("instance {slot} has no process right now (it is starting)"))
    }

    /// `evserve restart N`: a new process for slot N, which takes over once ready; the old
    /// one then drains (as one slot of a rolling reload: no request is refused).
    fn restart_instance(&mut self, slot: usize) -> Reply {
        match self.phase {
            Phase::Starting => return Err("the instances are still starting; try again".into()),
            Phase::Stopping { .. } => return Err("the launcher is stopping".into()),
            Phase::Running => {}
        }
        let pid = self.serving_instance(slot)?.pid;
        self.reload.request_slot(slot);
        log::info(&format!(
            "restart of instance {slot} (pid {pid}) requested: a new process takes over once it is ready"
        ));
        Ok(format!(
            "restarting instance {slot} (pid {pid}): a new process takes over once it is ready, then pid {pid} drains"
        ))
    }

    /// `evserve signal SIG N`: the signal to slot N's serving process, as is.
    fn signal_instance(&mut self, signal: i32, slot: usize) -> Reply {
        let pid = self.serving_instance(slot)?.pid;
        send(pid, signal)?;
        log::info(&format!(
            "{} sent to instance {slot} (pid {pid}) on request",
            control::signal_name(signal)
        ));
        Ok(format!(
            "{} sent to instance {slot} (pid {pid})",
            control::signal_name(signal)
        ))
    }

    /// `evserve signal SIG`: a signal the launcher handles, sent to itself, so it does
    /// exactly what that signal does; others are refused (they would end it).
    fn signal_self(&mut self, signal: i32) -> Reply {
        let name = control::signal_name(signal);
        let meaning = match signals::handled(signal) {
            Some(SignalRequest::Stop) => "graceful stop",
            Some(SignalRequest::Reload) => "rolling reload",
            Some(SignalRequest::AddInstance) => "one instance more (--workers)",
            Some(SignalRequest::RemoveInstance) => "one instance fewer (--workers)",
            Some(SignalRequest::ReopenLogs) => "log files reopened, here and in every instance",
            Some(SignalRequest::ChildExited) | None => {
                return Err(format!(
                "the launcher does not take {name} (it handles HUP, TERM, INT, TTIN, TTOU, USR1); \
                     give an INSTANCE to send it to an instance"
            ))
            }
        };
        send(std::process::id(), signal)?;
        Ok(format!(
            "{name} sent to the launcher (pid {}): {meaning}",
            std::process::id()
        ))
    }

    /// `evserve stop`: as SIGTERM.
    fn stop_by_request(&mut self) -> Reply {
        if let Phase::Stopping { .. } = self.phase {
            return Ok(format!(
                "the launcher (pid {}) is already stopping",
                std::process::id()
            ));
        }
        let draining = self.instances.len();
        self.begin_stop(0, "stop requested (evserve stop)");
        Ok(format!(
            "stopping the launcher (pid {}): {} draining for up to {}s",
            std::process::id(),
            log::count(draining, "instance", "instances"),
            self.config.instance.timeouts.graceful.as_secs()
        ))
    }

    /// `--reload`: takes the watched files' changes; once they are quiet, a rolling reload.
    pub(super) fn check_sources(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        let Some(sources) = &mut self.sources else {
            return;
        };
        if let Some(path) = sources.due(Instant::now()) {
            log::info(&format!("--reload: {} changed", path.display()));
            // What it did, or why not, is logged by the reload itself.
            let _ = self.begin_reload();
        }
    }

    /// `evserve status --json`: the status table as one JSON object (keys in the README).
    pub(super) fn status_json(&self) -> Value {
        let now = Instant::now();
        let mut rows: Vec<&Instance> = self.instances.iter().collect();
        rows.sort_by_key(|i| (i.slot, i.started));
        let mut instances: Vec<Value> = rows
            .into_iter()
            .map(|inst| {
                json!({
                    "instance": inst.slot,
                    "pid": inst.pid,
                    "port": self.slot_port(inst.slot).parse::<u16>().ok(),
                    "state": super::status::state_name(inst),
                    "restarts": self.slots.get(inst.slot).map_or(0, |s| s.history.total),
                    "uptime_seconds": now.duration_since(inst.started).as_secs(),
                    "requests": inst.requests,
                    "connections": inst.connections,
                    "rss_bytes": control::rss_bytes(inst.pid),
                })
            })
            .collect();
        for (index, slot) in self.slots.iter().enumerate().filter(|(_, s)| s.given_up) {
            instances.push(json!({
                "instance": index,
                "pid": null,
                "port": self.slot_port(index).parse::<u16>().ok(),
                "state": "given-up",
                "restarts": slot.history.total,
                "uptime_seconds": null,
                "requests": null,
                "connections": null,
                "rss_bytes": null,
            }));
        }
        json!({
            "launcher": {
                "pid": std::process::id(),
                "app": self.config.instance.app.text,
                "address": self.where_text(),
                "state": self.phase_name(),
                "uptime_seconds": now.duration_since(self.started).as_secs(),
                "instances_wanted": self.slots.len(),
                "control_socket": self.control.path.display().to_string(),
                "nginx": self.nginx.as_ref().map(|n| n.describe()),
            },
            "instances": instances,
        })
    }
}

fn send(pid: u32, signal: i32) -> Result<(), String> {
    let sig = Signal::from_named_raw(signal).ok_or_else(|| format!("bad signal {signal}"))?;
    let target = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("bad pid {pid}"))?;
    kill_process(target, sig).map_err(|e| {
        format!(
            "cannot send {} to pid {pid}: {e}",
            control::signal_name(signal)
        )
    })
}
