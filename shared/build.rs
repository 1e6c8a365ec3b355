//! `cfg(fixtures)` when the platforms' published payloads (`../shared/fixtures`, or `NEX_FIXTURES`) are
//! beside the repository: this crate's conformance tests against them are ignored, with the reason,
//! without them. (The test crate's build script is the one that fails a CI run that lacks them.)

fn main() {
    println!("cargo::rerun-if-env-changed=NEX_FIXTURES");
    println!("cargo::rustc-check-cfg=cfg(fixtures)");
    let dir = std::env::var("NEX_FIXTURES")
        .unwrap_or_else(|_| format!("{}/../../shared/fixtures", env!("CARGO_MANIFEST_DIR")));
    println!("cargo::rerun-if-changed={dir}");
    if std::path::Path::new(&dir).is_dir() {
        println!("cargo::rustc-cfg=fixtures");
        println!("cargo::rustc-env=NEX_FIXTURES_DIR={dir}");
    }
}
