//! evserve: the binary. Parses flags, validates them into a typed config and hands it to
//! the instance or the launcher.
//!
//! Thin glue only: no protocol, Python or process logic lives here.

use evserve::{cli, config, instance, log, nginx, supervisor};

fn main() {
    let cli = cli::Cli::parse_args();
    let code = match cli.command {
        Some(cli::Command::Status(args)) => supervisor::status_command(&args),
        Some(cli::Command::NginxConfig(args)) => nginx::config_command(&args),
        None => match cli.serve.validate() {
            Err(message) => {
                log::fatal(&message);
                2
            }
            Ok(config::Mode::Instance(config)) => instance::run(*config),
            // The launcher starts its instances with its own flags.
            Ok(config::Mode::Launcher(config)) if instance::under_launcher() => {
                instance::run(config.instance)
            }
            Ok(config::Mode::Launcher(config)) => supervisor::run(*config),
        },
    };
    std::process::exit(code);
}
