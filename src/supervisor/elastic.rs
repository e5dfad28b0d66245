//! Recycling and scaling: replaces an instance that reached --max-requests, --max-rss or
//! --max-lifetime (through the rolling reload's plan: the replacement is ready before the
//! old instance drains, one slot at a time), grows and shrinks the pool between MIN and MAX
//! (`--workers MIN:MAX`, `--min-instances`, `evserve scale`), and keeps nginx's upstream
//! equal to the live instances.
//!
//! The decisions are `policy`'s pure functions; this file gathers their inputs and acts.
//! Never shrinks below MIN or grows above MAX; never removes a port from service before
//! nginx has stopped sending it requests.

use std::time::{Duration, Instant};

use super::child::Role;
use super::control;
use super::policy::{recycle_reason, InstanceLoad, Scale, ScaleRules};
use super::{Launcher, Phase, Slot};
use crate::config::{BindAddr, LauncherConfig};
use crate::contract::HEARTBEAT_INTERVAL;
use crate::log;

/// How often resident memory is read from /proc for --max-rss.
const RSS_EVERY: Duration = Duration::from_secs(1);

/// The scaling bounds and delays of `config`, whose launcher has `sockets` listening
/// sockets (one per instance with `--port-range` or `--socket-dir`).
pub(super) fn scale_rules(config: &LauncherConfig, sockets: usize) -> ScaleRules {
    let elastic = &config.elastic;
    let max = if config.socket_per_instance() {
        sockets
    } else {
        config.workers as usize
    };
    ScaleRules {
        min: (elastic.min_instances as usize).clamp(1, max.max(1)),
        max,
        up_after: elastic.scale_up_after,
        down_after: elastic.scale_down_after,
    }
}

impl Launcher {
    /// The scaling bounds and delays from the configuration.
    pub(super) fn scale_rules(&self) -> ScaleRules {
        scale_rules(&self.config, self.sockets.len())
    }

    /// One loop turn of recycling and scaling.
    pub(super) fn tend_elastic(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        self.mark_ready_slots();
        self.sync_nginx_upstream();
        self.release_leaving();
        self.close_removed_ports();
        self.check_recycling();
        if self.scale_rules().autoscaling() && !self.reload.under_way() {
            self.autoscale();
        }
    }

    /// Slots whose instance has been ready join nginx's upstream.
    fn mark_ready_slots(&mut self) {
        for inst in &self.instances {
            if inst.ready && inst.role == Role::Serving {
                if let Some(slot) = self.slots.get_mut(inst.slot) {
                    slot.in_upstream = true;
                }
            }
        }
    }

    /// Starts recycling the first instance past one of its limits, unless a reload or
    /// another recycle is under way.
    fn check_recycling(&mut self) {
        if !self.recycle_rules.any() || self.reload.under_way() {
            return;
        }
        let now = Instant::now();
        let read_rss = self.recycle_rules.max_rss > 0 && now >= self.rss_checked + RSS_EVERY;
        if read_rss {
            self.rss_checked = now;
        }
        let due = self.instances.iter().find_map(|inst| {
            if inst.role != Role::Serving || !inst.ready || inst.slot >= self.slots.len() {
                return None;
            }
            let rss = read_rss.then(|| control::rss_bytes(inst.pid)).flatten();
            recycle_reason(&inst.limits, inst.requests, rss, inst.started, now)
                .map(|why| (inst.slot, inst.pid, why))
        });
        let Some((slot, pid, why)) = due else {
            return;
        };
        if self.reload.recycle(slot, now) {
            log::info(&format!("recycling instance {slot} (pid {pid}): {why}"));
            self.recycled += 1;
            self.last_recycle = Some((now, format!("instance {slot} (pid {pid}): {why}")));
        }
    }

    /// Asks the policy whether the pool grows or shrinks, and does it.
    fn autoscale(&mut self) {
        let now = Instant::now();
        let slots = &self.slots;
        // Given-up slots have no instance to wait for.
        let target = slots.iter().filter(|s| !s.given_up).count();
        let loads: Vec<InstanceLoad> = self
            .instances
            .iter()
            .filter(|i| i.role == Role::Serving && i.ready && i.slot < slots.len())
            .map(|i| InstanceLoad {
                busy_since: super::policy::busy_since(i.busy_since, i.last_heard, now),
                share: i.busy_share,
            })
            .collect();
        let rules = self.scale_rules();
        match self.scale_watch.decide(&rules, target, &loads, now) {
            Scale::Hold => {}
            // Given-up slots still hold their numbers (and ports).
            Scale::Grow(_) if self.slots.len() >= rules.max => {}
            Scale::Grow(why) => self.add_slot(&format!("scaling up: {why}")),
            Scale::Shrink(why) => self.remove_slot(&format!("scaling down: {why}")),
        }
    }

    /// Adds one instance; the caller checked the bounds.
    pub(super) fn add_slot(&mut self, why: &str) {
        let index = self.slots.len();
        let socket = if self.config.socket_per_instance() {
            index
        } else {
            0
        };
        if let Err(e) = self.reopen_socket(socket) {
            log::error(&format!("{why}: cannot add instance {index}: {e}"));
            return;
        }
        self.slots.push(Slot::new(socket));
        let text = format!(
            "{why}: adding instance {index} ({})",
            log::count(self.slots.len(), "instance", "instances")
        );
        log::info(&text);
        self.last_scale = Some((Instant::now(), text));
    }

    /// Binds the socket again if it was closed (every instance on it had been given up).
    fn reopen_socket(&mut self, socket: usize) -> Result<(), String> {
        let backlog = self.config.instance.backlog;
        let entry = self
            .sockets
            .get_mut(socket)
            .ok_or("no port left in --port-range")?;
        if entry.listener.is_none() {
            entry.listener = Some(super::listeners::Listener::bind(&entry.addr, backlog)?);
        }
        Ok(())
    }

    /// Removes the last instance gracefully; the caller checked the bounds. Behind nginx, the
    /// instance serves on until nginx no longer sends it requests.
    pub(super) fn remove_slot(&mut self, why: &str) {
        let Some(_) = self.slots.pop() else {
            return;
        };
        let gone = self.slots.len();
        self.reload.forget_slot(gone);
        let now = Instant::now();
        let behind_nginx = self.config.socket_per_instance() && self.nginx.is_some();
        for inst in &mut self.instances {
            if inst.slot != gone {
                continue;
            }
            if behind_nginx && inst.role == Role::Serving && inst.ready {
                inst.role = Role::Leaving { since: now };
            } else {
                inst.retire(now);
            }
        }
        let text = format!(
            "{why}: removing instance {gone} ({})",
            log::count(self.slots.len(), "instance", "instances")
        );
        log::info(&text);
        self.last_scale = Some((Instant::now(), text));
    }

    /// Leaving instances drain once nginx, reloaded without them, has closed its
    /// connections to them (or after --graceful-timeout).
    fn release_leaving(&mut self) {
        let now = Instant::now();
        let graceful = self.config.instance.timeouts.graceful;
        for inst in &mut self.instances {
            let Role::Leaving { since } = inst.role else {
                continue;
            };
            let heard_after = inst.last_heard >= since + HEARTBEAT_INTERVAL;
            let unused = heard_after && inst.connections == 0;
            if unused || now.saturating_duration_since(since) >= graceful {
                log::info(&format!(
                    "instance {} (pid {}) is out of nginx's upstream; draining it",
                    inst.slot, inst.pid
                ));
                inst.retire(now);
            }
        }
    }

    /// With --port-range, closes the ports of the slots above the live set once no instance
    /// serves there any more (a draining one has let go of its copy): a client or balancer
    /// that still tries one is refused at once instead of waiting in a backlog nobody
    /// accepts from. Adding the slot again binds the port again.
    fn close_removed_ports(&mut self) {
        if !self.config.socket_per_instance() {
            return;
        }
        for index in self.slots.len()..self.sockets.len() {
            let serving = self.instances.iter().any(|i| {
                i.slot == index
                    && matches!(
                        i.role,
                        Role::Serving | Role::Replacing | Role::Leaving { .. }
                    )
            });
            if !serving && self.sockets[index].listener.take().is_some() {
                log::info(&format!(
                    "closed port {} (no instance on it)",
                    self.port_of(index)
                ));
            }
        }
    }

    /// The sockets nginx sends requests to: those of the live slots that have been ready.
    fn upstream_sockets(&self) -> Vec<usize> {
        self.slots
            .iter()
            .filter(|s| s.in_upstream && !s.given_up)
            .map(|s| s.socket)
            .collect()
    }

    /// Rewrites nginx's configuration and reloads it when the live set changed.
    fn sync_nginx_upstream(&mut self) {
        if !self.config.socket_per_instance() || self.nginx.is_none() {
            return;
        }
        let wanted = self.upstream_sockets();
        if wanted == self.nginx_sockets || wanted.is_empty() {
            return;
        }
        let targets: Vec<BindAddr> = wanted
            .iter()
            .filter_map(|&s| self.sockets[s].listener.as_ref())
            .map(super::listeners::Listener::local_target)
            .collect();
        let Some(nginx) = &mut self.nginx else {
            return;
        };
        match nginx.update_upstream(&self.config, &targets) {
            Ok(what) => {
                let ports: Vec<String> = wanted.iter().map(|&s| self.port_of(s)).collect();
                log::info(&format!(
                    "nginx upstream now ports {}; {what}",
                    ports.join(",")
                ));
                self.nginx_sockets = wanted;
            }
            Err(e) => log::error(&format!("cannot update nginx's upstream: {e}")),
        }
    }

    fn port_of(&self, socket: usize) -> String {
        match &self.sockets[socket].addr {
            BindAddr::Tcp(sa) => sa.port().to_string(),
            BindAddr::Unix(p) => p.display().to_string(),
        }
    }

    /// `evserve scale N|+N|-N`: the answer for the client, or an error line.
    pub(super) fn scale_command(&mut self, arg: &str) -> Result<String, String> {
        if self.phase != Phase::Running {
            return Err("the launcher is not running (starting or stopping)".into());
        }
        let rules = self.scale_rules();
        let now = self.slots.len();
        let wanted = parse_scale(arg, now)?;
        let (low, high) = if rules.autoscaling() {
            (rules.min, rules.max)
        } else {
            (1, rules.max_fixed(self.config.socket_per_instance()))
        };
        if wanted < low || wanted > high {
            return Err(format!(
                "cannot run {wanted} instances: allowed {low} to {high}{}",
                if rules.autoscaling() {
                    " (--workers MIN:MAX / --min-instances)"
                } else {
                    ""
                }
            ));
        }
        let why = format!("evserve scale {arg}");
        while self.slots.len() < wanted {
            self.add_slot(&why);
        }
        while self.slots.len() > wanted {
            self.remove_slot(&why);
        }
        Ok(if wanted == now {
            format!("already {}", log::count(now, "instance", "instances"))
        } else {
            format!("scaled from {now} to {wanted} instances")
        })
    }

    /// The line of the status report about recycling and scaling; empty when neither is on.
    pub(super) fn elastic_status(&self, now: Instant) -> String {
        let rules = self.scale_rules();
        let mut parts = Vec::new();
        if rules.autoscaling() {
            parts.push(format!(
                "scaling {}:{}, {} now",
                rules.min,
                rules.max,
                self.slots.len()
            ));
        }
        if let Some((when, what)) = &self.last_scale {
            parts.push(format!(
                "last scaling {} ago: {what}",
                control::human_duration(now.saturating_duration_since(*when))
            ));
        }
        if self.recycle_rules.any() {
            parts.push(format!("recycled {}", self.recycled));
        }
        if let Some((when, what)) = &self.last_recycle {
            parts.push(format!(
                "last recycle {} ago: {what}",
                control::human_duration(now.saturating_duration_since(*when))
            ));
        }
        if parts.is_empty() {
            return String::new();
        }
        format!("{}\n", parts.join("; "))
    }
}

impl ScaleRules {
    /// The most instances a fixed count may be set to: the sockets (one per instance), or
    /// the launcher's limit.
    fn max_fixed(&self, socket_per_instance: bool) -> usize {
        if socket_per_instance {
            self.max
        } else {
            crate::cli::MAX_INSTANCES as usize
        }
    }
}

/// `4`, `+1` or `-2` against `now` instances.
pub fn parse_scale(arg: &str, now: usize) -> Result<usize, String> {
    let bad = || format!("'{arg}' is not a count like 4, +1 or -1");
    let text = arg.trim();
    if let Some(n) = text.strip_prefix('+') {
        let n: usize = n.parse().map_err(|_| bad())?;
        return Ok(now.saturating_add(n));
    }
    if let Some(n) = text.strip_prefix('-') {
        let n: usize = n.parse().map_err(|_| bad())?;
        return now
            .checked_sub(n)
            .ok_or_else(|| format!("cannot remove {n} of {now} instances"));
    }
    text.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_arguments_are_absolute_or_relative() {
        assert_eq!(parse_scale("4", 2), Ok(4));
        assert_eq!(parse_scale("+1", 2), Ok(3));
        assert_eq!(parse_scale("-1", 2), Ok(1));
        assert!(parse_scale("-3", 2).is_err());
        assert!(parse_scale("many", 2).is_err());
        assert!(parse_scale("+", 2).is_err());
    }
}
