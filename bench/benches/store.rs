//! Certificate store reads (`IdentityStore::load`, what every new handshake does) alone and
//! while another thread publishes new identities as fast as it can validate them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_bench::certs::server_spec;
use portcullis_rotator::source::DevCa;
use portcullis_rotator::{IdentityStore, Issued, Validator};

fn issued(ca: &DevCa) -> Issued {
    let leaf = ca
        .issue(&server_spec(), Duration::from_secs(3600))
        .expect("leaf");
    Issued {
        chain: leaf.chain,
        key: leaf.key,
        trust: vec![ca.certificate().clone()],
    }
}

fn bench_store(c: &mut Criterion) {
    let ca = DevCa::new("bench CA", Duration::from_secs(7200)).expect("CA");
    let candidates: Vec<Issued> = (0..4).map(|_| issued(&ca)).collect();
    let validator = Validator::default();
    let store = IdentityStore::new();
    let first = candidates[0].clone_material();
    store.publish(validator.check(first, SystemTime::now()).expect("valid"));

    let mut group = c.benchmark_group("identity_store_load");
    group.bench_function("uncontended", |b| {
        b.iter(|| std::hint::black_box(store.load()))
    });

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, stop, swaps) = (store.clone(), stop.clone(), swaps.clone());
        let validator = validator.clone();
        std::thread::spawn(move || {
            let mut turn = 0;
            while !stop.load(Ordering::Relaxed) {
                let candidate = candidates[turn % candidates.len()].clone_material();
                if let Ok(identity) = validator.check(candidate, SystemTime::now()) {
                    store.publish(identity);
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
                turn += 1;
            }
        })
    };
    group.bench_function("during_swaps", |b| {
        b.iter(|| std::hint::black_box(store.load()))
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    group.finish();
    eprintln!(
        "identity_store_load/during_swaps: {} identities published meanwhile",
        swaps.load(Ordering::Relaxed)
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = bench_store
}
criterion_main!(benches);
