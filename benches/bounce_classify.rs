//! Bounce parsing + classification throughput over the shared labelled corpus
//! (`shared/corpus/bounces/emails` beside the checkout or the worktree, or
//! `MXGATE_BOUNCE_CORPUS`), reported as bounces/s. Goal (issues 5 and 14): ≥ 20,000
//! bounces/s on one core (criterion runs on one thread). Skips plainly when the corpus is
//! absent.
//!
//! Run: `cargo bench --bench bounce_classify`

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn corpus() -> Option<Vec<Vec<u8>>> {
    // The same places `tests/bounce_corpus.rs` looks: a checkout has shared/ beside it, a
    // worktree under wt/ one level further up.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var_os("MXGATE_BOUNCE_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => ["../shared/corpus/bounces", "../../shared/corpus/bounces"]
            .iter()
            .map(|p| root.join(p))
            .find(|p| p.join("emails").is_dir())?,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("emails"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    let emails: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    (!emails.is_empty()).then_some(emails)
}

fn bench(c: &mut Criterion) {
    let Some(emails) = corpus() else {
        println!("bounce corpus not found (set MXGATE_BOUNCE_CORPUS); skipping bounce_classify");
        return;
    };
    let mut group = c.benchmark_group("bounce_classify");
    group.throughput(Throughput::Elements(emails.len() as u64));
    group.bench_function("corpus", |b| {
        b.iter(|| {
            let mut bounces = 0usize;
            for raw in &emails {
                bounces += usize::from(mxgate::bounce::parse(std::hint::black_box(raw)).is_bounce);
            }
            bounces
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
