//! Build script: lets `cargo test` run against the CPython it was built for.
//!
//! The Python extension module (built by maturin, which sets `PYO3_BUILD_EXTENSION_MODULE`)
//! must never link libpython nor carry an rpath to it: the interpreter that imports the
//! module provides it. Everything about the interpreter comes from pyo3's build config.

fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_BUILD_EXTENSION_MODULE");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_none() {
        // Unit tests link libpython; without an rpath the loader may pick up a system
        // libpython whose stdlib does not match the build interpreter's.
        pyo3_build_config::add_libpython_rpath_link_args();
    }
}
