//! Bulk encryption per provider: AES-128-GCM and ChaCha20-Poly1305 sealing one full TLS
//! record (16 KiB) with ring and with aws-lc-rs, the measurement behind taking the bulk
//! ciphers from ring.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const RECORD: usize = 16 * 1024;

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal_16k_record");
    group.throughput(Throughput::Bytes(RECORD as u64));
    let key = [7u8; 32];

    for (name, ring_alg, aws_alg) in [
        (
            "AES_128_GCM",
            &ring::aead::AES_128_GCM,
            &aws_lc_rs::aead::AES_128_GCM,
        ),
        (
            "CHACHA20_POLY1305",
            &ring::aead::CHACHA20_POLY1305,
            &aws_lc_rs::aead::CHACHA20_POLY1305,
        ),
    ] {
        let ring_key = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(ring_alg, &key[..ring_alg.key_len()]).expect("key"),
        );
        let mut buffer = vec![0u8; RECORD];
        group.bench_function(BenchmarkId::new(name, "ring"), |b| {
            b.iter(|| {
                let nonce = ring::aead::Nonce::assume_unique_for_key([1; 12]);
                ring_key
                    .seal_in_place_separate_tag(nonce, ring::aead::Aad::empty(), &mut buffer)
                    .expect("seal")
            })
        });

        let aws_key = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(aws_alg, &key[..aws_alg.key_len()]).expect("key"),
        );
        group.bench_function(BenchmarkId::new(name, "aws-lc-rs"), |b| {
            b.iter(|| {
                let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key([1; 12]);
                aws_key
                    .seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::empty(), &mut buffer)
                    .expect("seal")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, seal);
criterion_main!(benches);
