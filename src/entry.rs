//! The command line's dispatch: parse flags, validate them into a typed config and hand
//! it to the instance or the launcher; return the exit code.
//!
//! Thin glue only: no protocol, Python or process logic lives here, and nothing here
//! exits the process (the Python entry point returns the code so Python can finalize).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::{self, AppSpec, Mode};
use crate::{cli, instance, log, supervisor, wsgi};

/// The whole command line: `args` without the program name; `python` is the interpreter
/// this runs in, which the launcher starts its instances with.
pub fn main(args: Vec<OsString>, python: PathBuf) -> i32 {
    let cli = match cli::Cli::parse_from_args(args.clone()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Some(command) => supervisor::console_command(command),
        None => match cli.serve.validate() {
            Err(message) => {
                log::fatal(&message);
                2
            }
            Ok(mode) => run(mode, config::Relaunch { python, args }),
        },
    }
}

/// Validates the flags of a server for an app object (see `cli::parse_object_flags`).
pub fn object_mode(args: Vec<OsString>, app: &str) -> Result<Mode, String> {
    cli::parse_object_flags(args)?.validate_for(AppSpec::object(app))
}

/// Runs a validated configuration: one instance, or the launcher.
pub fn run(mode: Mode, relaunch: config::Relaunch) -> i32 {
    match mode {
        Mode::Instance(config) => instance::run(*config),
        // The launcher starts its instances (and its preloader) with its own flags.
        Mode::Launcher(config) if instance::under_launcher() => instance::run(config.instance),
        Mode::Launcher(mut config) => {
            if let Some(path) = &config.instance.log_config {
                if let Err(message) = wsgi::logging::install_in_launcher(path) {
                    log::fatal(&message);
                    return 2;
                }
            }
            config.relaunch = relaunch;
            wsgi::title::set(&supervisor::title(&config), "evserve-launch");
            supervisor::run(*config)
        }
    }
}
