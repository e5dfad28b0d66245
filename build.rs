//! Build script: links the binary to the CPython it was built against.
//!
//! It must never guess an interpreter: everything comes from pyo3's build config
//! (set `PYO3_PYTHON` to the base interpreter, not a venv's).

fn main() {
    // Without an rpath the loader picks up the system libpython, whose stdlib
    // does not match the build interpreter's.
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    let executable = config
        .executable()
        .map(|e| e.to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=EVSERVE_BUILD_PYTHON={executable}");
    println!(
        "cargo:rustc-env=EVSERVE_BUILD_PYTHON_VERSION={}.{}",
        config.version().major,
        config.version().minor
    );
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
}
