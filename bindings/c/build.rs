//! Gives `libevlog.so` a SONAME, so programs linked against it record the ABI they were built for
//! and the loader finds the installed file (`install.sh` installs the versioned file and links).
//! evlog follows cargo-c's rule for 0.x versions: every minor release may break the ABI, so the
//! SONAME carries `0.<minor>` (`libevlog.so.0.1`); from 1.0 on, the major alone.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libevlog.so.{abi}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
