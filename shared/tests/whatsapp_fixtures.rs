//! Every WhatsApp webhook payload in the fixtures (Meta's OpenAPI examples and captured live payloads)
//! walks into items: each inbound message with its wamid, type and sender, each receipt with its status.

#![cfg_attr(not(fixtures), allow(dead_code, unused_imports))]

use nex_shared::domain::whatsapp::delivery::Delivery;
use nex_shared::domain::whatsapp::keyword;
use nex_shared::domain::whatsapp::webhook::{self, Item};

/// The platforms' published payloads (see `shared/build.rs`).
fn fixtures_dir() -> String {
    option_env!("NEX_FIXTURES_DIR")
        .map_or_else(|| format!("{}/../../shared/fixtures", env!("CARGO_MANIFEST_DIR")), str::to_owned)
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let root = &format!("{}/whatsapp", fixtures_dir());
    let mut out = Vec::new();
    for dir in ["meta_openapi", "captured"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).expect("fixtures beside the repo") {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some("json") {
                out.push((path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[cfg_attr(fixtures, test)]
fn every_fixture_payload_walks_into_messages_and_statuses() {
    let all = fixtures();
    assert!(all.len() >= 18);
    let mut kinds = std::collections::BTreeSet::new();
    for (name, body) in &all {
        let items = webhook::parse(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!items.is_empty(), "{name}");
        for item in items {
            match item {
                Item::Message { wamid, phone_number_id, from, kind, .. } => {
                    assert!(wamid.starts_with("wamid."), "{name}");
                    assert!(!phone_number_id.is_empty(), "{name}");
                    assert!(from.phone.is_some() || from.bsuid.is_some(), "{name}: no sender");
                    kinds.insert(kind);
                }
                Item::Status { status, .. } => {
                    assert!(Delivery::parse(&status).is_some(), "{name}: status {status}");
                }
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
    }
    for kind in
        ["text", "image", "location", "contacts", "interactive", "button", "reaction", "order", "system", "unsupported"]
    {
        assert!(kinds.contains(kind), "no fixture of type {kind}");
    }
}

#[cfg_attr(fixtures, test)]
fn the_failed_receipt_fixture_carries_the_re_engagement_error() {
    let (_, body) = fixtures().into_iter().find(|(n, _)| n.contains("131047")).unwrap();
    let items = webhook::parse(&body).unwrap();
    assert!(matches!(&items[0], Item::Status { status, error_code: Some(131047), .. } if status == "failed"));
}

#[cfg_attr(fixtures, test)]
fn metas_unsubscribe_quick_reply_opts_out_and_no_other_fixture_text_is_a_keyword() {
    for (name, body) in fixtures() {
        for item in webhook::parse(&body).unwrap() {
            if let Item::Message { text: Some(t), kind, .. } = item {
                // Meta's template quick-reply example is a tap on an "Unsubscribe" button: an opt-out.
                let want = (name == "inbound_button_template_quick_reply.json").then_some(keyword::Keyword::OptOut);
                assert_eq!(keyword::classify(&t), want, "{name} ({kind})");
            }
        }
    }
}

/// Without `../shared/fixtures` beside the repository, this file's 3 conformance tests (marked
/// `cfg_attr(fixtures, ...)`) are not built; this says so in the run.
#[cfg(not(fixtures))]
#[test]
#[ignore = "3 conformance tests need ../shared/fixtures beside the repository"]
fn conformance_tests_skipped() {}
