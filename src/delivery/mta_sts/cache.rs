//! The policy cache: each domain's last good policy in the `stats` family (`S/<domain>`),
//! so a restart neither refetches every policy nor forgets one (RFC 8461 §5: a cached
//! policy protects against an attacker who strips the TXT record).

use serde::{Deserialize, Serialize};

use crate::stats::store::Store;

const PREFIX: &[u8] = b"S/";

/// A fetched policy as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    /// The TXT record's `id` the policy was fetched under.
    pub id: String,
    /// The policy file as served (parsed again on load: small, and one format to trust).
    pub text: String,
    pub fetched_ms: u64,
    /// `fetched_ms` + `max_age`.
    pub expires_ms: u64,
}

fn key(domain: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(domain.to_ascii_lowercase().as_bytes());
    k
}

/// The cached policy of `domain`, expired or not; `None` when none (or unreadable: a
/// store error only costs a refetch).
pub fn get(store: &Store, domain: &str) -> Option<Cached> {
    let raw = store.with(|cf| Ok(cf.get(key(domain))?));
    match raw {
        Ok(Some(v)) => serde_json::from_slice(&v).ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, domain, "MTA-STS: cannot read the policy cache");
            None
        }
    }
}

pub fn put(store: &Store, domain: &str, c: &Cached) {
    let Ok(v) = serde_json::to_vec(c) else { return };
    if let Err(e) = store.put(&key(domain), &v) {
        tracing::warn!(error = %e, domain, "MTA-STS: cannot store the policy");
    }
}
