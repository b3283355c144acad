//! The committed `include/evlog.h` is exactly what the pinned cbindgen generates from this crate,
//! and its version macros match Cargo.toml. Regenerate with
//! `EVLOG_BLESS_HEADER=1 cargo test -p evlog-c --test header`.

use std::path::PathBuf;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    crate_dir().join("../../include/evlog.h")
}

fn version_macros() -> String {
    let v = env!("CARGO_PKG_VERSION");
    format!(
        "#define EVLOG_VERSION \"{v}\"\n#define EVLOG_VERSION_MAJOR {}\n#define EVLOG_VERSION_MINOR {}\n#define EVLOG_VERSION_PATCH {}",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    )
}

fn generate() -> String {
    let dir = crate_dir();
    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(version_macros());
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen failed");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("header is UTF-8")
}

#[test]
fn committed_header_is_up_to_date() {
    let generated = generate();
    let path = header_path();
    if std::env::var_os("EVLOG_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/evlog.h is out of date with bindings/c/src; regenerate it with \
         `EVLOG_BLESS_HEADER=1 cargo test -p evlog-c --test header` and commit it"
    );
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let committed = std::fs::read_to_string(header_path()).expect("include/evlog.h exists");
    let value = |name: &str| {
        committed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} is not defined in include/evlog.h"))
            .trim()
            .trim_matches('"')
            .to_string()
    };
    assert_eq!(value("EVLOG_VERSION"), env!("CARGO_PKG_VERSION"));
    assert_eq!(
        value("EVLOG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        value("EVLOG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        value("EVLOG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION_PATCH")
    );
}
