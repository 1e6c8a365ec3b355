//! Forwarding's signing: one Standard Webhooks signature (`v1,` + base64 HMAC-SHA256 over
//! `id.timestamp.body`) per KB of body, and the two signatures sent during a secret's rotation.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nex_shared::domain::webhooks;

fn bench(c: &mut Criterion) {
    let key = webhooks::key_of(&webhooks::new_secret()).unwrap();
    let old = webhooks::key_of(&webhooks::new_secret()).unwrap();
    let id = "order:amazon:303-0000001-0000001:1764000000000";
    let mut g = c.benchmark_group("webhook_sign");
    for kb in [1usize, 4, 64] {
        let body = vec![b'x'; kb * 1024];
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("one_secret", format!("{kb}KB")), &body, |b, body| {
            b.iter(|| {
                webhooks::signature_header(black_box(std::slice::from_ref(&key)), id, 1_764_000_000, black_box(body))
            })
        });
        g.bench_with_input(BenchmarkId::new("rotation_two_secrets", format!("{kb}KB")), &body, |b, body| {
            let keys = [key.clone(), old.clone()];
            b.iter(|| webhooks::signature_header(black_box(&keys), id, 1_764_000_000, black_box(body)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
