//! `cfg(fixtures)` when the platforms' published payloads are beside the repository: this crate's
//! conformance tests against them are built only then. (The test crate's build script is the one that
//! fails a CI run that lacks them.)

#[path = "../infra/fixtures_probe.rs"]
mod fixtures_probe;

fn main() {
    fixtures_probe::probe();
}
