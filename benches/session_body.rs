//! DATA decoding throughput (terminator search, dot-unstuffing, bare-LF check) in MB/s,
//! for a 4 KiB message (the load benchmark's size) and a 1 MiB one, fed in 16 KiB reads
//! as the session does.
//!
//! Run: `cargo bench --bench session_body`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mxgate::session::body::DataDecoder;

/// A dot-stuffed message of about `size` bytes with 76-column lines, plus CRLF.CRLF.
fn message(size: usize) -> Vec<u8> {
    let mut m =
        b"From: alice@client.test\r\nTo: sales@example.test\r\nSubject: bench\r\n\r\n".to_vec();
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\r\n";
    let mut n = 0;
    while m.len() < size {
        if n % 20 == 0 {
            m.extend_from_slice(b"..stuffed line\r\n");
        }
        m.extend_from_slice(line);
        n += 1;
    }
    m.extend_from_slice(b".\r\n");
    m
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("session_body");
    for (name, size) in [("4KiB", 4 * 1024), ("1MiB", 1024 * 1024)] {
        let input = message(size);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut d = DataDecoder::new(32 * 1024 * 1024);
                for chunk in black_box(&input).chunks(16 * 1024) {
                    if d.feed(chunk).is_some() {
                        break;
                    }
                }
                black_box(d.finish())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
