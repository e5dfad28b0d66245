//! nginx configuration (stub, being written).

use crate::cli::NginxConfigArgs;

pub fn config_command(args: &NginxConfigArgs) -> i32 {
    let _ = args;
    crate::log::fatal("nginx-config is not built yet");
    1
}
