//! Stripe webhook hot path: signature verification and the minimal parse of a ~3 KB event
//! (`charge.succeeded`, 3,444 bytes, from the fixtures). Goal: verify + parse under 20 µs.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use nex_shared::domain::stripe::{event, signature};
use secrecy::SecretString;

/// Stripe's own `charge.succeeded` when the fixtures are beside the repository, else this repository's sample.
fn body() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/stripe/events/charge.succeeded.json");
    std::fs::read(path).unwrap_or_else(|_| {
        let sample =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../events/stripe/03-order-a-charge-succeeded-not-handled.json");
        let event: serde_json::Value = serde_json::from_slice(&std::fs::read(sample).unwrap()).unwrap();
        event["body"].as_str().unwrap().as_bytes().to_vec()
    })
}

fn bench(c: &mut Criterion) {
    let body = body();
    let t = 1_764_000_000;
    let header = signature::sign_header(&["whsec_bench"], t, &body);
    let one = signature::Verifier::new(&[SecretString::from("whsec_bench")]).unwrap();
    let rolled =
        signature::Verifier::new(&[SecretString::from("whsec_old"), SecretString::from("whsec_bench")]).unwrap();

    let mut g = c.benchmark_group("stripe_webhook");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("verify_3kb", |b| {
        b.iter(|| one.verify(Some(black_box(&header)), black_box(&body), t, Some(300)).unwrap())
    });
    g.bench_function("verify_3kb_two_secrets_worst_case", |b| {
        b.iter(|| rolled.verify(Some(black_box(&header)), black_box(&body), t, Some(300)).unwrap())
    });
    g.bench_function("parse_3kb", |b| b.iter(|| event::parse(black_box(&body)).unwrap()));
    g.bench_function("verify_and_parse_3kb", |b| {
        b.iter(|| {
            one.verify(Some(black_box(&header)), black_box(&body), t, Some(300)).unwrap();
            event::parse(black_box(&body)).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
