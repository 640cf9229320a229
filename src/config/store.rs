//! `[store]`: the one RocksDB under `server.data_dir` (queue, statistics, suppressions,
//! warming counters as column families, see [`crate::db`]). Not named by SPEC.
//!
//! `cache_bytes` is the memory the store may use for what it caches and buffers: the shared
//! block cache, and the memtables of every column family, which a write buffer manager
//! charges to that same cache. One number bounds it all, instead of four databases each
//! with RocksDB's defaults.

use serde::Deserialize;

use super::types::ByteSize;

/// Below this RocksDB would flush memtables of a few hundred KiB and thrash the cache.
pub const MIN_CACHE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Block cache plus memtables of the whole store (three quarters of it at most for memtables).
    pub cache_bytes: ByteSize,
}

/// 32 MiB: a spool reads back what it wrote moments ago (memtable) and the page cache holds
/// the rest, so a larger cache buys no throughput. Measured (issue 13, benches/load/inbound.sh,
/// 10,000 × 4 KiB): peak PSS 48.5 MiB at 32 MiB against 85–97 MiB at 128 MiB, same msg/s.
impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_bytes: ByteSize(32 * 1024 * 1024),
        }
    }
}

impl StoreConfig {
    /// Problems as `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if self.cache_bytes.0 < MIN_CACHE_BYTES {
            p.push((
                "store.cache_bytes",
                format!("must be at least 16MiB, got {} bytes", self.cache_bytes.0),
            ));
        }
        if self.cache_bytes.0 > 1 << 40 {
            p.push(("store.cache_bytes", "must be at most 1024GiB".to_string()));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn cache_bytes_defaults_to_32mib_and_takes_units() {
        let c = Config::from_toml("", Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.store.cache_bytes.0, 32 << 20);
        let c = Config::from_toml("[store]\ncache_bytes = \"256MiB\"\n", Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.store.cache_bytes.0, 256 << 20);
    }

    #[test]
    fn a_cache_too_small_or_unknown_keys_are_refused_with_their_line() {
        let text = "[server]\nhostname = \"mx.example.test\"\n[store]\ncache_bytes = \"1MiB\"\n";
        let Err(e) = Config::from_toml(text, Path::new("t.toml")) else {
            panic!("1MiB accepted");
        };
        assert_eq!(
            e.lines(),
            ["t.toml:4: store.cache_bytes: must be at least 16MiB, got 1048576 bytes"]
        );
        let Err(e) = Config::from_toml("[store]\ncache_size = 1\n", Path::new("t.toml")) else {
            panic!("unknown key accepted");
        };
        assert!(e.lines()[0].contains("unknown field `cache_size`"), "{e}");
        let Err(e) = Config::from_toml("[store]\ncache_bytes = \"lots\"\n", Path::new("t.toml"))
        else {
            panic!("bad size accepted");
        };
        assert!(e.lines()[0].starts_with("t.toml:2:"), "{e}");
    }
}
