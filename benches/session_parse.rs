//! SMTP command parsing throughput: a realistic pipelined transaction's command lines
//! through `session::command::parse`, reported as commands/s.
//!
//! Run: `cargo bench --bench session_parse`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mxgate::session::command::{LineReader, Scan, parse};

const TRANSACTION: &[u8] = b"EHLO mail-relay.client.test\r\n\
MAIL FROM:<newsletter+bounces-42@client.test> SIZE=4096 BODY=8BITMIME\r\n\
RCPT TO:<sales@example.test>\r\n\
RCPT TO:<reply+AbCdEf0123456789@example.test> NOTIFY=FAILURE ORCPT=rfc822;reply@example.test\r\n\
RCPT TO:<Support@Example.Test.>\r\n\
DATA\r\n\
RSET\r\n\
NOOP\r\n\
QUIT\r\n";

fn lines() -> Vec<&'static [u8]> {
    TRANSACTION.split_inclusive(|&b| b == b'\n').collect()
}

fn bench(c: &mut Criterion) {
    let lines = lines();
    let mut g = c.benchmark_group("session_parse");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("commands", |b| {
        b.iter(|| {
            for line in &lines {
                let _ = black_box(parse(black_box(line)));
            }
        })
    });
    g.throughput(Throughput::Bytes(TRANSACTION.len() as u64));
    g.bench_function("split_and_parse", |b| {
        b.iter(|| {
            let mut reader = LineReader::new(2048);
            let mut rest = black_box(TRANSACTION);
            while let Scan::Line { len } = reader.scan(rest) {
                let _ = black_box(parse(&rest[..len]));
                rest = &rest[len..];
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
