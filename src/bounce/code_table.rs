//! The product's category code table (shared corpus README, "The product's category
//! definitions"; the same table is the fixture `tests/fixtures/bounce_category_codes.md`):
//! which category a reply code and enhanced status code stand for when the words of the
//! reply say nothing more.
//!
//! A pair the table puts in several categories ("550 5.0.0": DMARC or Invalid address) is
//! the words' to decide: it is read only when the reply has no words at all, and then as
//! the first of its categories from the address outwards (Invalid address, Mailbox, Mailbox
//! Full, Rejection, Recipient Error, Rate Limit, Blocked, DMARC): a shared code most often
//! speaks of the recipient, and DMARC or a block needs words to be claimed. A row with a note
//! ("5.2.1 (inactive account)") counts only where no row without one has the pair. A bare
//! reply code is never read as DMARC ("550", "553" without status, as the table has them):
//! RFC 5321 gives those codes no DMARC meaning, and every unexplained 550 would become DMARC.
//!
//! Consulted after the diagnostic's words and before provider code ranges and the generic
//! RFC 3463 subject rows: "550 5.7.1" is policy by RFC 3463 but, in this product's table, a
//! recipient that is not there. Decisive RFC 3463 rows (X.2.2 full, X.7.26 DMARC) still come
//! first: their meaning is fixed by the RFC, whatever reply code carries them.

use super::category::{Category, Reason};

/// (reply code, enhanced status or "" for none, category, shared by several categories),
/// sorted for binary search.
/// Generated from the fixture table by the rules above.
const TABLE: &[(u16, &str, Category, bool)] = {
    use Category::*;
    &[
        (221, "", RateLimit, false),
        (450, "", RecipientError, false),
        (450, "4.1.1", InvalidAddress, false),
        (450, "4.1.8", Rejection, false),
        (450, "4.2.2", Mailbox, false),
        (452, "", Mailbox, false),
        (452, "4.1.1", MailboxFull, false),
        (452, "4.2.2", MailboxFull, false),
        (498, "", Mailbox, false),
        (500, "5.0.0", InvalidAddress, false),
        (500, "5.1.1", InvalidAddress, false),
        (501, "", Rejection, false),
        (501, "5.1.0", Rejection, false),
        (501, "5.1.1", InvalidAddress, false),
        (501, "5.1.3", InvalidAddress, false),
        (501, "5.1.7", Rejection, false),
        (501, "5.1.8", Rejection, false),
        (501, "5.2.0", Rejection, false),
        (501, "5.5.4", InvalidAddress, false),
        (501, "5.7.0", InvalidAddress, false),
        (502, "", RecipientError, false),
        (503, "", RecipientError, false),
        (505, "", InvalidAddress, false),
        (508, "5.1.1", InvalidAddress, false),
        (509, "5.7.509", Dmarc, false),
        (510, "", RecipientError, false),
        (511, "", InvalidAddress, true),
        (511, "5.1.1", InvalidAddress, false),
        (516, "5.1.6", Mailbox, false),
        (521, "5.3.0", RecipientError, false),
        (521, "5.3.2", InvalidAddress, false),
        (522, "5.2.2", Mailbox, false),
        (522, "5.7.1", InvalidAddress, false),
        (525, "5.7.13", InvalidAddress, false),
        (530, "", RecipientError, false),
        (530, "5.3.0", RecipientError, false),
        (530, "5.7.0", RecipientError, false),
        (530, "5.7.1", RecipientError, false),
        (530, "5.7.57", RecipientError, false),
        (533, "5.7.1", Rejection, false),
        (535, "", RecipientError, false),
        (540, "5.7.1", InvalidAddress, false),
        (541, "5.4.1", RecipientError, false),
        (542, "", InvalidAddress, false),
        (550, "", InvalidAddress, false),
        (550, "4.2.1", RateLimit, false),
        (550, "4.2.2", Mailbox, false),
        (550, "4.4.0", RecipientError, false),
        (550, "4.4.2", RecipientError, false),
        (550, "4.4.7", RecipientError, false),
        (550, "5.0.0", InvalidAddress, true),
        (550, "5.0.1", InvalidAddress, false),
        (550, "5.0.350", InvalidAddress, true),
        (550, "5.1.0", InvalidAddress, true),
        (550, "5.1.1", InvalidAddress, false),
        (550, "5.1.10", InvalidAddress, false),
        (550, "5.1.181", InvalidAddress, false),
        (550, "5.1.2", InvalidAddress, false),
        (550, "5.1.3", RecipientError, false),
        (550, "5.1.351", InvalidAddress, false),
        (550, "5.1.6", InvalidAddress, false),
        (550, "5.1.7", Rejection, false),
        (550, "5.1.8", Rejection, false),
        (550, "5.1.9", RecipientError, false),
        (550, "5.2.0", Mailbox, false),
        (550, "5.2.1", RateLimit, false),
        (550, "5.2.122", RateLimit, false),
        (550, "5.2.14", InvalidAddress, false),
        (550, "5.2.2", Mailbox, true),
        (550, "5.2.3", Rejection, false),
        (550, "5.2.5", InvalidAddress, false),
        (550, "5.3.0", InvalidAddress, false),
        (550, "5.3.2", InvalidAddress, false),
        (550, "5.3.5", RecipientError, false),
        (550, "5.4.0", Rejection, false),
        (550, "5.4.103", RecipientError, false),
        (550, "5.4.108", RecipientError, false),
        (550, "5.4.12", Rejection, false),
        (550, "5.4.14", Rejection, false),
        (550, "5.4.142", RecipientError, false),
        (550, "5.4.300", RecipientError, false),
        (550, "5.4.310", InvalidAddress, false),
        (550, "5.4.312", InvalidAddress, false),
        (550, "5.4.315", RecipientError, false),
        (550, "5.4.316", RecipientError, false),
        (550, "5.4.317", RecipientError, false),
        (550, "5.4.350", InvalidAddress, false),
        (550, "5.4.355", InvalidAddress, false),
        (550, "5.4.4", RecipientError, false),
        (550, "5.4.6", Mailbox, false),
        (550, "5.4.7", RecipientError, false),
        (550, "5.5.0", InvalidAddress, true),
        (550, "5.5.1", InvalidAddress, true),
        (550, "5.5.2", InvalidAddress, true),
        (550, "5.5.5", RecipientError, false),
        (550, "5.7.0", InvalidAddress, false),
        (550, "5.7.1", InvalidAddress, false),
        (550, "5.7.100", InvalidAddress, false),
        (550, "5.7.105", RecipientError, false),
        (550, "5.7.124", RecipientError, false),
        (550, "5.7.128", RecipientError, false),
        (550, "5.7.129", RecipientError, false),
        (550, "5.7.13", InvalidAddress, true),
        (550, "5.7.133", RecipientError, false),
        (550, "5.7.134", RecipientError, false),
        (550, "5.7.136", RecipientError, false),
        (550, "5.7.193", RecipientError, false),
        (550, "5.7.20", Dmarc, false),
        (550, "5.7.21", Rejection, false),
        (550, "5.7.23", Rejection, false),
        (550, "5.7.230", RecipientError, false),
        (550, "5.7.24", Rejection, false),
        (550, "5.7.26", Rejection, true),
        (550, "5.7.27", Rejection, false),
        (550, "5.7.367", RecipientError, false),
        (550, "5.7.368", Rejection, false),
        (550, "5.7.5", Dmarc, false),
        (550, "5.7.509", Dmarc, false),
        (550, "5.7.51", RecipientError, false),
        (550, "5.7.520", RecipientError, false),
        (550, "5.7.54", RecipientError, false),
        (550, "5.7.57", Rejection, false),
        (550, "5.7.6", Dmarc, false),
        (550, "5.7.64", RecipientError, false),
        (550, "5.7.703", RecipientError, false),
        (550, "5.7.705", RecipientError, false),
        (550, "5.7.8", Dmarc, false),
        (550, "5.7.9", Dmarc, false),
        (550, "5.7.900", RecipientError, false),
        (550, "5.7.902", RecipientError, false),
        (550, "5.7.929", RecipientError, false),
        (550, "5.7.987", RecipientError, false),
        (550, "5.7.999", RecipientError, false),
        (550, "5.8.1", InvalidAddress, false),
        (550, "5.8.2", RecipientError, false),
        (551, "", InvalidAddress, true),
        (551, "5.1.1", InvalidAddress, false),
        (552, "", Mailbox, true),
        (552, "5.1.1", InvalidAddress, true),
        (552, "5.2.1", Mailbox, false),
        (552, "5.2.2", MailboxFull, false),
        (552, "5.5.2", Mailbox, false),
        (552, "5.7.1", RecipientError, false),
        (553, "5.0.0", RecipientError, false),
        (553, "5.1.1", InvalidAddress, false),
        (553, "5.1.3", InvalidAddress, false),
        (553, "5.1.8", Rejection, true),
        (553, "5.3.0", InvalidAddress, false),
        (553, "5.3.1", Mailbox, false),
        (553, "5.5.3", InvalidAddress, false),
        (553, "5.7.1", InvalidAddress, false),
        (553, "5.7.2", InvalidAddress, false),
        (554, "", InvalidAddress, false),
        (554, "4.3.5", RecipientError, false),
        (554, "5.0.0", InvalidAddress, true),
        (554, "5.1.0", RecipientError, false),
        (554, "5.1.1", InvalidAddress, true),
        (554, "5.1.2", InvalidAddress, true),
        (554, "5.1.8", Rejection, false),
        (554, "5.2.0", RecipientError, false),
        (554, "5.2.1", InvalidAddress, false),
        (554, "5.2.121", RateLimit, false),
        (554, "5.2.122", RateLimit, false),
        (554, "5.2.2", InvalidAddress, false),
        (554, "5.2.3", Blocked, false),
        (554, "5.4.6", RecipientError, false),
        (554, "5.5.1", InvalidAddress, false),
        (554, "5.5.4", RecipientError, false),
        (554, "5.7.1", InvalidAddress, true),
        (554, "5.7.105", RecipientError, false),
        (554, "5.7.5", Dmarc, false),
        (554, "5.7.7", InvalidAddress, false),
        (555, "5.7.1", RecipientError, false),
        (555, "5.7.5", Dmarc, false),
        (556, "", RecipientError, false),
        (556, "5.1.1", InvalidAddress, false),
        (556, "5.7.1", RecipientError, false),
        (571, "", RecipientError, false),
        (572, "", InvalidAddress, false),
        (577, "5.1.1", InvalidAddress, false),
        (577, "5.7.7", RecipientError, false),
        (579, "", RecipientError, false),
        (585, "5.1.1", InvalidAddress, false),
        (605, "", InvalidAddress, false),
        (612, "", InvalidAddress, false),
        (701, "", RecipientError, false),
    ]
};

/// The category the table gives `reply` with `status` (None: the reply had no status), and
/// the status as the table spells it (for the rule id). `wordless`: the reply has no words,
/// so a pair shared by several categories may be read too.
pub(crate) fn lookup(
    reply: u16,
    status: Option<&str>,
    wordless: bool,
) -> Option<(&'static str, Category)> {
    let key = (reply, status.unwrap_or(""));
    let i = TABLE
        .binary_search_by(|(r, s, ..)| (*r, *s).cmp(&key))
        .ok()?;
    let (_, spelled, category, shared) = TABLE[i];
    (wordless || !shared).then_some((spelled, category))
}

/// The reason a table verdict carries: the plainest reason of the category.
pub(crate) fn reason(category: Category) -> Reason {
    match category {
        Category::Blocked => Reason::Blocked,
        Category::Dmarc => Reason::AuthFailure,
        Category::InvalidAddress => Reason::UserUnknown,
        Category::Mailbox => Reason::Suspend,
        Category::MailboxFull => Reason::MailboxFull,
        Category::RateLimit => Reason::TooManyConn,
        Category::RecipientError => Reason::SystemError,
        Category::Rejection => Reason::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_has_one_row_per_pair() {
        assert!(
            TABLE
                .windows(2)
                .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1))
        );
    }

    #[test]
    fn pairs_are_found_and_shared_pairs_take_the_address_reading() {
        let category = |reply, status| lookup(reply, status, true).map(|r| r.1);
        assert_eq!(
            category(550, Some("5.1.10")),
            Some(Category::InvalidAddress)
        );
        assert_eq!(category(550, Some("5.7.1")), Some(Category::InvalidAddress));
        assert_eq!(category(221, None), Some(Category::RateLimit));
        // Shared by DMARC and Invalid address: the words decide; without any, the address.
        assert_eq!(category(550, Some("5.0.0")), Some(Category::InvalidAddress));
        assert_eq!(lookup(550, Some("5.0.0"), false), None);
        // "550 5.2.1 (inactive account)" yields to the plain "550 5.2.1" row.
        assert_eq!(category(550, Some("5.2.1")), Some(Category::RateLimit));
        assert_eq!(category(550, None), Some(Category::InvalidAddress));
        assert_eq!(lookup(553, None, true), None);
        assert_eq!(lookup(599, Some("5.9.9"), true), None);
    }
}
