//! SRS (Sender Rewriting Scheme, Shevek's SRS0 form) for the `forward` route: a forwarded
//! copy leaves with envelope sender `SRS0=HHHH=TT=orig.domain=orig-local@<bounce domain>`,
//! so the receiving side's SPF check sees our domain (which lists us), not the original
//! sender's (which does not). A bounce to that address is turned back into the original
//! sender by [`reverse`]: HHHH is a keyed hash (forgeries don't verify) and TT a day stamp
//! (old addresses expire), so the scheme cannot be abused as an open relay.

use crate::routing::token::TokenKey;

/// SRS addresses older than this many days no longer reverse.
pub const MAX_AGE_DAYS: u64 = 21;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `SRS0=...@srs_domain` for `sender` (`local@domain`), at day `today` (days since epoch).
/// The null sender stays null (a forwarded bounce must not bounce).
pub fn forward(key: &TokenKey, sender: &str, srs_domain: &str, today: u64) -> String {
    let Some((local, domain)) = sender.rsplit_once('@') else {
        return String::new();
    };
    let tt = stamp(today);
    let domain = domain.to_ascii_lowercase();
    // Hashed lower-cased: some MTAs lower-case the local part of a return path.
    let hash = key.short_hash(format!("{tt}{domain}{}", local.to_lowercase()).as_bytes());
    format!("SRS0={hash}={tt}={domain}={local}@{srs_domain}")
}

/// The original sender of an SRS0 local part, if its hash is ours and it is not too old.
pub fn reverse(key: &TokenKey, local_part: &str, today: u64) -> Option<String> {
    let rest = local_part
        .strip_prefix("SRS0=")
        .or_else(|| local_part.strip_prefix("srs0="))?;
    let mut parts = rest.splitn(4, '=');
    let (hash, tt, domain, local) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let domain = domain.to_ascii_lowercase();
    let want = key.short_hash(
        format!(
            "{}{domain}{}",
            tt.to_ascii_lowercase(),
            local.to_lowercase()
        )
        .as_bytes(),
    );
    if !hash.eq_ignore_ascii_case(&want) || local.is_empty() || domain.is_empty() {
        return None;
    }
    let age = (stamp_value(today) + 1024 - decode_stamp(tt)?) % 1024;
    (u64::from(age) <= MAX_AGE_DAYS).then(|| format!("{local}@{domain}"))
}

fn stamp_value(today: u64) -> u16 {
    (today % 1024) as u16
}

/// Two base32 characters: the day number modulo 1024.
fn stamp(today: u64) -> String {
    let v = stamp_value(today);
    let a = ALPHABET[usize::from(v >> 5)] as char;
    let b = ALPHABET[usize::from(v & 31)] as char;
    format!("{a}{b}")
}

fn decode_stamp(tt: &str) -> Option<u16> {
    let tt = tt.to_ascii_lowercase();
    let b = tt.as_bytes();
    if b.len() != 2 {
        return None;
    }
    let hi = ALPHABET.iter().position(|&c| c == b[0])? as u16;
    let lo = ALPHABET.iter().position(|&c| c == b[1])? as u16;
    Some(hi << 5 | lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_sender_reverses_within_its_lifetime_only() {
        let key = TokenKey::new([3; 32]);
        let srs = forward(&key, "Alice@Client.Test", "example.test", 20_000);
        let (local, domain) = srs.rsplit_once('@').expect("address");
        assert_eq!(domain, "example.test");
        assert!(local.starts_with("SRS0="), "{srs}");
        assert_eq!(
            reverse(&key, local, 20_000).as_deref(),
            Some("Alice@client.test")
        );
        assert_eq!(
            reverse(&key, &local.to_lowercase(), 20_005).as_deref(),
            Some("alice@client.test")
        );
        assert_eq!(reverse(&key, local, 20_000 + MAX_AGE_DAYS + 1), None);
        assert_eq!(reverse(&TokenKey::new([4; 32]), local, 20_000), None);
        assert_eq!(reverse(&key, "SRS0=abcd=aa=x.test=bob", 20_000), None);
        assert_eq!(forward(&key, "", "example.test", 1), "");
    }

    #[test]
    fn day_stamp_wraps_around() {
        let key = TokenKey::new([3; 32]);
        let srs = forward(&key, "a@b.test", "example.test", 1023);
        let local = srs.split('@').next().expect("local");
        assert!(reverse(&key, local, 1024 + 3).is_some());
    }
}
