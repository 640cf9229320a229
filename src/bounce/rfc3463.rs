//! RFC 3463 enhanced status codes (and the RFC 5248 registry's later rows) → reasons, and
//! through them the 8 categories: X.1.x address, X.2.x mailbox, X.3.x mail system, X.4.x
//! network and routing, X.5.x protocol, X.6.x content, X.7.x security and policy.
//!
//! Each row says how much the code alone is worth. `Decisive` rows name one cause that no
//! wording changes (X.2.2 mailbox full, X.7.26 authentication failed): they decide before
//! the diagnostic phrases. `Table` rows name a class that the words often make precise
//! (X.1.1 is also sent for a filter's refusal, X.2.1 for unknown users): the phrases are read
//! first and the row decides only when they say nothing. Generic codes (X.0.0, X.1.0, X.2.0,
//! X.5.0, X.7.0, X.7.1) have no row: only the words can tell.
//!
//! Provider rows hold the codes one provider documents outside the registry (Microsoft's
//! X.7.6xx reputation blocks, X.4.31x DNS and expiry codes); they are tried after the phrases.

use super::category::Reason;

/// How much a status code says on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strength {
    /// Decides before any phrase.
    Decisive,
    /// Decides when no phrase does.
    Table,
}

/// A row of the table: the reason, its strength and its rule id (`X.s.d`).
pub(crate) type Row = (Reason, Strength, &'static str);

/// `(class, subject, detail)` of a well-formed code.
fn split(status: &str) -> Option<(u8, u16, u16)> {
    let mut it = status.splitn(3, '.');
    let class: u8 = it.next()?.parse().ok()?;
    let subject: u16 = it.next()?.parse().ok()?;
    let detail: u16 = it.next()?.parse().ok()?;
    Some((class, subject, detail))
}

/// The RFC 3463 / RFC 5248 row of a failure code (class 4 or 5).
pub(crate) fn row(status: &str) -> Option<Row> {
    use Reason::*;
    use Strength::{Decisive as D, Table as T};
    let (class, subject, detail) = split(status)?;
    if class != 4 && class != 5 {
        return None;
    }
    let transient = class == 4;
    Some(match (subject, detail) {
        (1, 1) => (UserUnknown, T, "X.1.1"),
        (1, 2) => (HostUnknown, T, "X.1.2"),
        (1, 3) => (UserUnknown, T, "X.1.3"),
        (1, 4) => (UserUnknown, T, "X.1.4"),
        (1, 6) => (HasMoved, T, "X.1.6"),
        (1, 7) => (Rejected, D, "X.1.7"),
        (1, 8) => (Rejected, D, "X.1.8"),
        (1, 9) => (SystemError, T, "X.1.9"),
        // RFC 7505: the recipient domain publishes a null MX.
        (1, 10) => (NotAccept, T, "X.1.10"),
        (2, 1) => (Suspend, T, "X.2.1"),
        (2, 2) => (MailboxFull, D, "X.2.2"),
        (2, 3) => (ExceedLimit, T, "X.2.3"),
        (2, 4) => (SystemError, T, "X.2.4"),
        (3, 0) => (SystemError, T, "X.3.0"),
        (3, 1) => (SystemFull, T, "X.3.1"),
        (3, 2) => (NotAccept, T, "X.3.2"),
        (3, 3) => (SystemError, T, "X.3.3"),
        (3, 4) => (MesgTooBig, D, "X.3.4"),
        (3, 5) => (SystemError, T, "X.3.5"),
        (4, 0) => (NetworkError, T, "X.4.0"),
        // 5.4.1 is "no answer from host" in the RFC, but Microsoft sends it for recipients
        // its directory refuses: only a transient 4.4.1 is surely the network.
        (4, 1) if transient => (NetworkError, T, "X.4.1"),
        (4, 2) => (NetworkError, T, "X.4.2"),
        (4, 3) => (SystemError, T, "X.4.3"),
        (4, 4) if transient => (NetworkError, T, "X.4.4"),
        (4, 4) => (HostUnknown, T, "X.4.4"),
        (4, 5) => (SystemError, T, "X.4.5"),
        (4, 6) => (NetworkError, T, "X.4.6"),
        (4, 7) => (Expired, D, "X.4.7"),
        (5, 3) => (TooManyConn, T, "X.5.3"),
        (5, 1..=6) => (SyntaxError, T, "X.5.1-6"),
        (6, 0..=10) => (ContentError, T, "X.6.x"),
        (7, 3) | (7, 4) | (7, 11) | (7, 12) | (7, 14) => (SecurityError, T, "X.7.3-14"),
        // X.7.5 cryptographic failure, X.7.6 algorithm not supported: what receivers say
        // when a DKIM signature does not verify.
        (7, 5) | (7, 6) => (AuthFailure, T, "X.7.5-6"),
        (7, 7) => (SecurityError, T, "X.7.7"),
        (7, 8) if !transient => (SecurityError, T, "X.7.8"),
        (7, 9) => (PolicyViolation, T, "X.7.9"),
        (7, 10) | (7, 30) => (FailedStartTls, T, "X.7.10"),
        (7, 13) => (Suspend, D, "X.7.13"),
        // RFC 7372: X.7.21 no acceptable DKIM signature, X.7.23/24 SPF failed or erred
        // are the sending domain's own records (the product's Rejection); X.7.20/22/26/29
        // are the alignment checks DMARC stands on.
        (7, 21) | (7, 23) | (7, 24) => (Rejected, D, "X.7.21-24"),
        (7, 20) | (7, 22) | (7, 26) | (7, 29) => (AuthFailure, D, "X.7.20-29"),
        (7, 25) => (RequirePtr, D, "X.7.25"),
        (7, 27) => (Rejected, D, "X.7.27"),
        (7, 28) => (PolicyViolation, T, "X.7.28"),
        _ => return None,
    })
}

/// Codes providers document outside the registry.
pub(crate) fn provider_row(status: &str) -> Option<(Reason, &'static str)> {
    use Reason::*;
    let (class, subject, detail) = split(status)?;
    if class != 4 && class != 5 {
        return None;
    }
    Some(match (subject, detail) {
        // Microsoft (Exchange Online NDR codes).
        (1, 351) => (UserUnknown, "microsoft:X.1.351"),
        (2, 121) | (2, 122) => (Speeding, "microsoft:X.2.121-122"),
        (4, 310) => (HostUnknown, "microsoft:X.4.310"),
        (4, 312) => (NetworkError, "microsoft:X.4.312"),
        (4, 300) | (4, 316) | (4, 317) => (Expired, "microsoft:X.4.316"),
        (7, 57) => (SecurityError, "microsoft:X.7.57"),
        (7, 509) | (7, 510) => (AuthFailure, "microsoft:X.7.509"),
        (7, 511) | (7, 600..=649) | (7, 708) | (7, 750) => (Blocked, "microsoft:X.7.6xx"),
        (7, 650..=699) => (BadReputation, "microsoft:X.7.650-699"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subject_of_rfc_3463_reaches_its_category() {
        use crate::bounce::Category::*;
        let cases = [
            ("5.1.1", InvalidAddress),
            ("5.2.2", MailboxFull),
            ("5.2.1", Mailbox),
            ("5.3.4", Rejection),
            ("4.4.1", RecipientError),
            ("5.5.2", Rejection),
            ("5.6.0", Rejection),
            ("5.7.26", Dmarc),
            ("5.7.25", Blocked),
            ("5.1.8", Rejection),
        ];
        for (code, want) in cases {
            let (reason, _, _) = row(code).expect(code);
            assert_eq!(reason.category(), want, "{code}");
        }
    }

    #[test]
    fn generic_codes_have_no_row() {
        for code in [
            "5.0.0", "4.0.0", "5.7.1", "5.7.0", "5.1.0", "5.2.0", "2.1.5", "5.x.1",
        ] {
            assert!(row(code).is_none(), "{code}");
        }
    }

    #[test]
    fn provider_ranges_are_read_apart_from_the_registry() {
        assert_eq!(
            provider_row("4.7.650").map(|r| r.0),
            Some(Reason::BadReputation)
        );
        assert!(row("4.7.650").is_none());
    }
}
