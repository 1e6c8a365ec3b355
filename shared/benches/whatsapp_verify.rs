//! WhatsApp webhook hot path: X-Hub-Signature-256 verification and the batch walk of a 10-message
//! delivery (Meta batches entries, changes and messages). Built from Meta's own text-message example.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use nex_shared::domain::whatsapp::{keyword, signature, webhook};
use secrecy::SecretString;

fn batch() -> Vec<u8> {
    // Meta's own example when the fixtures are beside the repository, else this repository's sample.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/whatsapp/meta_openapi/inbound_text.json");
    let one: serde_json::Value = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).unwrap(),
        Err(_) => {
            let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/whatsapp/02-inbound-text.json");
            let event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sample).unwrap()).unwrap();
            serde_json::from_str(event["body"].as_str().unwrap()).unwrap()
        }
    };
    let message = one["entry"][0]["changes"][0]["value"]["messages"][0].clone();
    let mut payload = one.clone();
    let messages: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            let mut m = message.clone();
            m["id"] = format!("wamid.bench{i}").into();
            m
        })
        .collect();
    payload["entry"][0]["changes"][0]["value"]["messages"] = messages.into();
    serde_json::to_vec(&payload).unwrap()
}

fn bench(c: &mut Criterion) {
    let body = batch();
    let header = signature::sign_header("app_secret", &body);
    let verifier = signature::HubVerifier::new(&[SecretString::from("app_secret")]).unwrap();
    let mut g = c.benchmark_group("whatsapp_webhook");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("verify_10_message_batch", |b| {
        b.iter(|| verifier.verify(Some(black_box(&header)), black_box(&body)).unwrap())
    });
    g.bench_function("verify_parse_classify_10_message_batch", |b| {
        b.iter(|| {
            verifier.verify(Some(black_box(&header)), black_box(&body)).unwrap();
            let items = webhook::parse(black_box(&body)).unwrap();
            for item in &items {
                if let webhook::Item::Message { text: Some(t), .. } = item {
                    black_box(keyword::classify(t));
                }
            }
            items.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
