//! For the build scripts of `shared` and `tests`: whether the platforms' published payloads
//! (`../shared/fixtures`, or `NEX_FIXTURES`) are beside the repository. If they are, it sets `cfg(fixtures)`
//! and `NEX_FIXTURES_DIR` for the crate; the conformance tests are built only then.

/// The fixtures' folder, if it is there.
pub fn probe() -> Option<String> {
    println!("cargo::rerun-if-env-changed=NEX_FIXTURES");
    println!("cargo::rustc-check-cfg=cfg(fixtures)");
    let dir = std::env::var("NEX_FIXTURES").unwrap_or_else(|_| {
        format!("{}/../../shared/fixtures", std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
    });
    // Watching a folder that is not there would rerun (and rebuild) on every build; without it, setting
    // NEX_FIXTURES is what probes again.
    println!("cargo::rerun-if-changed=build.rs");
    std::path::Path::new(&dir).is_dir().then(|| {
        println!("cargo::rerun-if-changed={dir}");
        println!("cargo::rustc-cfg=fixtures");
        println!("cargo::rustc-env=NEX_FIXTURES_DIR={dir}");
        dir
    })
}
