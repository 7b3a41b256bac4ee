//! First-bytes classification cost: `portcullis::sniff::classify_first_bytes` on what a
//! permissive listener sees first.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis::sniff::classify_first_bytes;

fn bench_classify(c: &mut Criterion) {
    let inputs: [(&str, &[u8]); 4] = [
        (
            "tls_client_hello",
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
        ),
        ("http_get", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("one_byte", &[0x16]),
        ("empty", b""),
    ];
    let mut group = c.benchmark_group("classify_first_bytes");
    for (name, bytes) in inputs {
        group.bench_with_input(BenchmarkId::from_parameter(name), bytes, |b, bytes| {
            b.iter(|| classify_first_bytes(std::hint::black_box(bytes)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2));
    targets = bench_classify
}
criterion_main!(benches);
