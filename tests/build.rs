//! Whether the platforms' published payloads (`../shared/fixtures`, or `NEX_FIXTURES`) are beside the
//! repository. With them, the conformance tests run; without them, each is marked ignored with the
//! reason, so a fresh clone passes and says what it skipped. Under `CI=true` their absence fails the build.

fn main() {
    println!("cargo::rerun-if-env-changed=NEX_FIXTURES");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg(fixtures)");
    let dir = std::env::var("NEX_FIXTURES")
        .unwrap_or_else(|_| format!("{}/../../shared/fixtures", env!("CARGO_MANIFEST_DIR")));
    println!("cargo::rerun-if-changed={dir}");
    if std::path::Path::new(&dir).is_dir() {
        println!("cargo::rustc-cfg=fixtures");
        println!("cargo::rustc-env=NEX_FIXTURES_DIR={dir}");
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true, and the platforms' fixtures are not at {dir}: the conformance tests must run in CI");
    }
}
