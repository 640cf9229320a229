//! An error with its causes on one line — `client error (Connect): tcp connect error:
//! Connection refused` — for logs and the `last_reply` an operator reads: hyper's or
//! RocksDB's top-level message alone says too little. The one loop over
//! [`Error::source`](std::error::Error::source) in the crate.

/// `e`, then each of its sources, joined by `": "`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_follows_the_error() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(super::chain(&e), "outer: disk full");
        assert_eq!(super::chain(&std::io::Error::other("alone")), "alone");
    }
}
