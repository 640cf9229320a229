//! Phrases about the recipient's mailbox and address.

use crate::bounce::category::Reason;

/// Mailbox state: full, too big for it, disabled, moved, domain takes no mail.
pub(super) const MAILBOX: &[(Reason, &[&str])] = &[
    (
        Reason::MailboxFull,
        &[
            "mailbox full", "mailbox is full", "mailbox is over quota", "over quota",
            "overquota", "quota exceeded", "exceeded storage allocation", "quota exceed",
            "exceeds quota", "exceeding its mailbox quota", "insufficient disk space",
            "not enough disk space", "not enough storage", "mailbox size limit exceeded",
            "mail quota exceeded", "disk quota", "diskspace quota", "mailfolder is full",
            "full mailbox", "mailbox has exceeded", "maildir over quota", "exceeded its quota",
            "does not have enough space", "mailbox exceeded the local limit",
            "user has too many messages", "is full", "has exceeded its disk space limit",
            "boite du destinataire pleine", "mailbox quota", "user's space has been used up",
            "too much mail data", "mailbox over", "quota violation", "reached disk quota",
            "would exceed maximum allowed storage", "exceeds its quota", "storage full",
            "out of storage", "no space left", "mailbox is over", "inbox is full",
            "account is full", "exceeded the storage", "mailbox storage",
            "メールボックスが一杯", "容量",
        ],
    ),
    (
        Reason::MesgTooBig,
        &[
            "message too big", "message too large", "message size exceeds",
            "message file too big", "max message size", "maximum message size",
            "exceeded maximum inbound message size", "message length exceeds",
            "size exceeds fixed", "taille limite du message", "message is too large",
            "message exceeds maximum", "message size limit", "exceeds size limit",
            "too large for", "mail size", "size of the message",
        ],
    ),
    (
        Reason::ExceedLimit,
        &["message header size exceeds limit", "exceeds the size limit", "exceeded size limit"],
    ),
    (
        Reason::Suspend,
        &[
            "account disabled", "has been disabled", "has been suspended", "is disabled",
            "mailbox currently suspended", "mailbox is frozen", "account has been disabled",
            "temporarily inactive", "recipient suspend", "account is inactive",
            "this account has been disabled", "this mailbox is disabled",
            "user or domain is disabled", "user suspended", "user is disabled",
            "account is suspended", "account suspended", "is a deactivated mailbox",
            "user is terminated", "mailbox disabled", "inactive user", "inactive account",
            "account is locked", "account is blocked", "boite du destinataire archivee",
            "account has been temporarily suspended", "disabled or discontinued",
            "mailbox is inactive", "inactive mailbox", "user is inactive",
        ],
    ),
    (
        Reason::HasMoved,
        &[" has been replaced by ", "address has moved", "mailbox has moved", "has moved"],
    ),
    (
        Reason::NotAccept,
        &[
            "does not accept mail", "nullmx", "null mx", "does not accept email",
            "domain does not accept", "mail receiving disabled", "no mx record found",
            "no route for current request", "accepts no mail", "not accept any mail",
            "domain doesn't accept mail", "not accepting network messages",
        ],
    ),
];

/// The address or its domain does not exist, or the recipient refuses the mail.
pub(super) const RECIPIENT: &[(Reason, &[&str])] = &[
    (
        Reason::HostUnknown,
        &[
            "host unknown", "unknown host", "host or domain name not found",
            "domain does not exist", "no such domain", "domain not found", "unknown domain",
            "domain is not reachable", "name or service not known", "unrouteable address",
            "unroutable address", "unrouteable mail domain", "domain must exist",
            "recipient domain must exist", "domain name not found", "host not found",
            "mail domain mentioned in email address is unknown", "no mx for",
            "domain doesn't exist", "domain does not have", "invalid domain",
            "the account or domain may not exist", "unknown or illegal alias domain",
            "dns records for the destination computer could not be found", "bad destination",
            "illegal host/domain name", "no valid host", "no such host", "host * not found",
        ],
    ),
    (
        Reason::UserUnknown,
        &[
            "user unknown", "unknown user", "userunknown", "no such user", "unknown recipient",
            "recipient unknown", "no such recipient", "no such mailbox", "mailbox not found",
            "mailbox unavailable", "mailbox does not exist", "mailbox not present",
            "invalid recipient", "invalid mailbox", "invalid address", "address unknown",
            "address does not exist", "address not present", "address invalid",
            "does not exist", "doesn't exist", "not exist", "user not found",
            "recipient not found", "no mailbox here", "no mailbox by that name",
            "no mailbox found", "no such address", "no such email", "no such person",
            "not a valid mailbox", "not a valid user", "not a valid recipient",
            "is not a known user", "not known user", "user not known", "unknown mailbox",
            "no account by that name", "account does not exist", "no such account",
            "user doesn't have a", "doesn't have an account", "does not have an account",
            "recipient address rejected: access denied", "recipientnotfound",
            "recipient not ok", "recipient is not accepted",
            "unknown address", "bad address", "bad recipient", "badrcptto",
            "recipient is unavailable", "no mail box available", "not our customer",
            "email account that you tried to reach does not exist", "account unavailable",
            "user does not exist", "user missing home directory", "utilisateur inconnu",
            "destinataire inconnu", "no existe", "nessun utente", "unbekannt",
            "not listed in domino directory", "not listed in public name",
            "no such local user", "is not a valid", "invalid or unknown virtual user",
            "cannot be found", "could not be found", "not found in directory",
            "unknown local part", "unknown local-part", "resolver.adr.recipnotfound",
            "recipient address rejected: undeliverable address", "unverified address",
            "not a known recipient", "mailbox name not allowed", "mailbox is unavailable",
            "wrong address", "no longer valid", "invalid email address",
            "this user doesn't", "user invalid", "unknown account",
            "unknown recipient", "unknown e-mail address", "user not exist",
            "not have a mailbox", "no such mail drop", "isn't a valid", "disabled or deleted",
            "存在しない", "宛先不明",
        ],
    ),
    (
        Reason::Filtered,
        &[
            "refused to receive", "only accepting mail from specific",
            "due to the receiver's policy", "due to receiver's policy",
            "message rejected due to user rules", "rejected by recipient",
            "recipient's preferences", "user refuses", "user reject", "blocked by the recipient",
            "domain filter", "refuse to receive", "restricted to receive", "receiving restricted",
            "recipient refused", "not accepting mail", "message filtered",
        ],
    ),
];

/// Generic wordings, tried last: they only say on which side the refusal happened.
pub(super) const FALLBACK: &[(Reason, &[&str])] = &[
    (
        Reason::UserUnknown,
        &["recipient address rejected", "recipient rejected", "rcpt rejected", "invalid rcpt"],
    ),
    (Reason::Blocked, &["access denied", "denied", "not allowed"]),
];
