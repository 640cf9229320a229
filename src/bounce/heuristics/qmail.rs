//! qmail (and its derivatives: vpopmail, netqmail, Yahoo's old MTA) notices:
//! `Hi. This is the qmail-send program ...`, `<a@b>:` then the reason, codes as `(#5.1.1)`.

/// Removes qmail's per-attempt trailer `Giving up on 192.0.2.1.`: it closes every permanent
/// failure and says nothing about the queue lifetime (qmail's real expiry notice reads
/// "I'm not going to try again; this message has been in the queue too long.").
pub(super) fn strip(block: &str) -> String {
    if !block.contains("iving up on ") && !block.contains("IVING UP ON ") {
        return block.to_owned();
    }
    block
        .lines()
        .filter(|l| {
            let t = l.trim().to_ascii_lowercase();
            !(t.starts_with("giving up on ")
                && t[13..].starts_with(|c: char| c.is_ascii_digit() || c == '['))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn giving_up_on_a_host_is_not_an_expiry() {
        let s = super::strip(
            "<a@b.test>:\n192.0.2.1 does not like recipient.\nGiving up on 192.0.2.1.\n",
        );
        assert!(!s.contains("Giving up"));
        assert!(s.contains("does not like recipient"));
    }
}
