//! One instance (stub, being written).

use crate::config::InstanceConfig;

pub fn run(config: InstanceConfig) -> i32 {
    let _ = config;
    1
}
