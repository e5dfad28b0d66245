//! The launcher (stub, being written).

use crate::cli::StatusArgs;
use crate::config::LauncherConfig;

pub fn run(config: LauncherConfig) -> i32 {
    let _ = config;
    crate::log::fatal("the launcher is not built yet");
    1
}

pub fn status_command(args: &StatusArgs) -> i32 {
    let _ = args;
    crate::log::fatal("the launcher is not built yet");
    1
}
