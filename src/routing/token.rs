//! VERP tokens: `bounce+TOKEN@<bounce domain>` where TOKEN names (queue id, recipient index)
//! and carries an HMAC-SHA256 tag, so a forged bounce cannot mark someone else's recipient.
//!
//! Lower-case base32 (RFC 4648 alphabet, no padding): some MTAs lower-case the local part of
//! the return path, and base32 survives that where base64 does not.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::envelope::QueueId;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const TAG_LEN: usize = 8;

/// The server's token key (32 random bytes kept in the data dir; in a cluster, the key all
/// nodes share, issue 18).
#[derive(Clone)]
pub struct TokenKey {
    key: [u8; 32],
    /// The node's own key from before it joined a cluster: tokens it issued then (mail still
    /// in flight, unsubscribe links already sent) keep verifying. Never used to issue.
    earlier: Option<[u8; 32]>,
}

impl TokenKey {
    pub fn new(bytes: [u8; 32]) -> TokenKey {
        TokenKey {
            key: bytes,
            earlier: None,
        }
    }

    /// `shared` issues and verifies; this key still verifies (when it differs).
    pub fn adopt(&self, shared: [u8; 32]) -> TokenKey {
        TokenKey {
            key: shared,
            earlier: (shared != self.key).then_some(self.key),
        }
    }

    /// The key that issues tokens (offered to the cluster by the first node).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The keys that verify: the issuing one first.
    fn keys(&self) -> impl Iterator<Item = &[u8; 32]> {
        std::iter::once(&self.key).chain(self.earlier.as_ref())
    }

    /// Loads `path`, or creates it with fresh random bytes (mode 0600).
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<TokenKey> {
        if let Ok(bytes) = std::fs::read(path)
            && let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(TokenKey::new(arr));
        }
        let key: [u8; 32] = rand::random();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(TokenKey::new(key))
    }

    /// Writes the issuing key to `path` (mode 0600): the cluster's key, kept so that a
    /// restart while Redis is down still issues tokens every node accepts.
    pub fn store(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Short keyed hash (4 base32 characters, 20 bits) for SRS addresses: enough to stop
    /// forged SRS bounces from turning us into a relay, short enough for a local part.
    pub fn short_hash(&self, data: &[u8]) -> String {
        let mut tagged = b"srs:".to_vec();
        tagged.extend_from_slice(data);
        let mut h = encode(&self.tag(&tagged));
        h.truncate(4);
        h
    }

    /// Token for recipient `rcpt` of message `id`.
    pub fn issue(&self, id: QueueId, rcpt: u16) -> String {
        let mut buf = Vec::with_capacity(18);
        buf.extend_from_slice(&id.to_bytes());
        buf.extend_from_slice(&rcpt.to_be_bytes());
        let tag = self.tag(&buf);
        buf.extend_from_slice(&tag);
        encode(&buf)
    }

    /// Unsubscribe token for `address` (RFC 8058 one-click URL and the `unsubscribe+TOKEN@`
    /// alias; issue 6 item 6): the lower-cased address and a tag, base32. Longer than a
    /// VERP token (about 1.6 characters per address byte + 13).
    pub fn issue_unsubscribe(&self, address: &str) -> String {
        let mut buf = address.trim().to_lowercase().into_bytes();
        let tag = self.unsubscribe_tag(&buf);
        buf.extend_from_slice(&tag);
        encode(&buf)
    }

    /// The address an unsubscribe token names, if its tag is ours.
    pub fn verify_unsubscribe(&self, token: &str) -> Option<String> {
        let buf = decode(&token.trim().to_ascii_lowercase())?;
        if buf.len() <= TAG_LEN {
            return None;
        }
        let (address, tag) = buf.split_at(buf.len() - TAG_LEN);
        self.keys().find(|key| {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(*key).expect("HMAC takes any key length");
            mac.update(b"unsubscribe:");
            mac.update(address);
            mac.verify_truncated_left(tag).is_ok()
        })?;
        String::from_utf8(address.to_vec()).ok()
    }

    fn unsubscribe_tag(&self, address: &[u8]) -> [u8; TAG_LEN] {
        let mut payload = b"unsubscribe:".to_vec();
        payload.extend_from_slice(address);
        self.tag(&payload)
    }

    /// The (message, recipient) a token names, if its tag is ours.
    pub fn verify(&self, token: &str) -> Option<(QueueId, u16)> {
        let buf = decode(&token.to_ascii_lowercase())?;
        if buf.len() != 10 + TAG_LEN {
            return None;
        }
        let (payload, tag) = buf.split_at(10);
        // Constant-time comparison through the Mac API.
        self.keys().find(|key| {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(*key).expect("HMAC takes any key length");
            mac.update(payload);
            mac.verify_truncated_left(tag).is_ok()
        })?;
        let id = QueueId::from_bytes(&payload[..8])?;
        let rcpt = u16::from_be_bytes([payload[8], payload[9]]);
        Some((id, rcpt))
    }
}

fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_verifies_even_lower_or_upper_cased() {
        let key = TokenKey::new([7; 32]);
        let id = QueueId::generate();
        let t = key.issue(id, 3);
        assert!(t.len() <= 40, "fits a local part: {t}");
        assert_eq!(key.verify(&t), Some((id, 3)));
        assert_eq!(key.verify(&t.to_uppercase()), Some((id, 3)));
    }

    #[test]
    fn unsubscribe_tokens_name_the_address_and_resist_forgery() {
        let key = TokenKey::new([7; 32]);
        let t = key.issue_unsubscribe("Bob@Example.TEST");
        assert_eq!(
            key.verify_unsubscribe(&t).as_deref(),
            Some("bob@example.test")
        );
        assert_eq!(
            key.verify_unsubscribe(&t.to_uppercase()).as_deref(),
            Some("bob@example.test")
        );
        assert_eq!(TokenKey::new([8; 32]).verify_unsubscribe(&t), None);
        // A VERP token is no unsubscribe token.
        assert_eq!(key.verify_unsubscribe(&key.issue(QueueId(1), 0)), None);
        assert_eq!(key.verify_unsubscribe(""), None);
    }

    #[test]
    fn an_adopted_cluster_key_issues_and_the_nodes_own_key_still_verifies() {
        let own = TokenKey::new([7; 32]);
        let before = own.issue(QueueId(9), 1);
        let unsub = own.issue_unsubscribe("a@x.test");
        let joined = own.adopt([9; 32]);
        let shared = TokenKey::new([9; 32]);
        let t = joined.issue(QueueId(9), 2);
        assert_eq!(shared.verify(&t), Some((QueueId(9), 2)));
        assert_eq!(joined.verify(&before), Some((QueueId(9), 1)));
        assert_eq!(
            joined.verify_unsubscribe(&unsub).as_deref(),
            Some("a@x.test")
        );
        assert_eq!(shared.verify(&before), None);
    }

    #[test]
    fn forged_or_foreign_tokens_do_not_verify() {
        let key = TokenKey::new([7; 32]);
        let t = key.issue(QueueId(42), 0);
        assert_eq!(TokenKey::new([8; 32]).verify(&t), None);
        let mut forged = t.clone().into_bytes();
        forged[3] = if forged[3] == b'a' { b'b' } else { b'a' };
        assert_eq!(key.verify(&String::from_utf8(forged).expect("ascii")), None);
        assert_eq!(key.verify("not-base32!"), None);
        assert_eq!(key.verify(""), None);
    }
}
