//! The concepts themselves: the subject words and predicates of each idea, in priority
//! order (`super` pairs them up in a text). Data only; what counts as a pair is `super`'s.

use crate::bounce::category::Reason;

/// One concept: id, reason, subject words, predicates. Earlier rows win.
pub(super) type Concept = (
    &'static str,
    Reason,
    &'static [&'static str],
    &'static [&'static str],
);

const SENDER: &[&str] = &[
    "sender",
    "from: domain",
    "envelope from",
    "envelope-from",
    "mail from",
    "from address",
    "from domain",
    "originator",
    "return path",
    "return-path",
];
const NOT_GOOD: &[&str] = &[
    "rejected",
    "refused",
    "invalid",
    "not allowed",
    "not permitted",
    "unverified",
    "not verified",
    "verify failed",
    "verification failed",
    "blacklisted",
    "blocklisted",
    "denied",
    "unknown",
    "does not exist",
    "not exist",
    "unroutable",
    "not found",
    "must exist",
    "no mx",
];
const ADDRESSEE: &[&str] = &[
    "user",
    "recipient",
    "mailbox",
    "address",
    "account",
    "addressee",
    "local part",
    "local-part",
    "destinataire",
    "usuario",
    "utente",
    "empfänger",
    "benutzer",
    "用户",
    "收件人",
    "宛先",
    "ユーザ",
];
const ABSENT: &[&str] = &[
    "unknown",
    "not found",
    "not exist",
    "doesn't exist",
    "does not exist",
    "no such",
    "not recognized",
    "not recognised",
    "invalid",
    "not valid",
    "isn't valid",
    "unavailable",
    "not known",
    "nonexistent",
    "non-existent",
    "inconnu",
    "desconocido",
    "sconosciuto",
    "unbekannt",
    "不存在",
    "存在しない",
    "不明",
];

pub(super) const CONCEPTS: &[Concept] = &[
    ("sender-refused", Reason::Rejected, SENDER, NOT_GOOD),
    // Before ip-blocked and too-much-mail: "rate limited due to IP reputation" is about the
    // sender's standing, not its pace.
    (
        "bad-reputation",
        Reason::BadReputation,
        &["reputation"],
        &["low", "poor", "bad", "ip", "negative", "sender"],
    ),
    // The sending host itself is refused: listed, banned, or not the host it claims to be
    // (unverifiable sending IPs, a domain that "mismatches client ip", no PTR).
    (
        "ip-blocked",
        Reason::Blocked,
        &[
            "your ip",
            "ip address",
            "sending ip",
            "client ip",
            "ip for sending",
            "client host",
            "your host",
            "your server",
        ],
        &[
            "unverifyable",
            "unverifiable",
            "mismatches",
            "does not match",
            "blocked",
            "blacklisted",
            "blocklisted",
            "listed",
            "banned",
            "rejected",
            "refused",
            "denied",
            "not allowed",
            "invalid",
        ],
    ),
    (
        "header-malformed",
        Reason::NotCompliantRfc,
        &["header"],
        &[
            "duplicate",
            "multiple",
            "malformed",
            "not compliant",
            "non-compliant",
        ],
    ),
    (
        "message-too-big",
        Reason::MesgTooBig,
        &["message size", "message", "size of"],
        &[
            "too big",
            "too large",
            "exceeds the maximum",
            "size limit",
            "exceeds maximum",
        ],
    ),
    (
        "mailbox-full",
        Reason::MailboxFull,
        &[
            "mailbox",
            "mail box",
            "inbox",
            "quota",
            "storage",
            "disk space",
            "mailfolder",
        ],
        &[
            "full",
            "exceeded",
            "insufficient",
            "no space",
            "not enough space",
            "over quota",
        ],
    ),
    (
        "mailbox-disabled",
        Reason::Suspend,
        &["account", "mailbox", "mail box", "user"],
        &[
            "disabled",
            "suspended",
            "inactive",
            "frozen",
            "deactivated",
            "locked",
            "discontinued",
            "not active",
        ],
    ),
    (
        "address-moved",
        Reason::HasMoved,
        &["mailbox", "address", "user", "recipient"],
        &["has moved", "moved to", "was moved"],
    ),
    (
        "domain-unknown",
        Reason::HostUnknown,
        &["domain", "host", "hostname", "mx"],
        &[
            "not found",
            "unknown",
            "does not exist",
            "doesn't exist",
            "not exist",
            "no such",
            "could not be resolved",
            "cannot be resolved",
            "unresolvable",
            "not reachable",
            "nxdomain",
            "illegal",
        ],
    ),
    ("addressee-unknown", Reason::UserUnknown, ADDRESSEE, ABSENT),
    // The sender must authenticate, or is not authorized to send here ("delivery not
    // authorized", "authentication required"): the sender's side must change.
    (
        "auth-required",
        Reason::SecurityError,
        &[
            "authentication",
            "smtp auth",
            "starttls",
            "encryption",
            "delivery",
        ],
        &["required", "needed", "must", "mandatory", "not authorized"],
    ),
    (
        "relay-denied",
        Reason::NoRelaying,
        &["relay", "relaying"],
        &[
            "denied",
            "not permitted",
            "not allowed",
            "prohibited",
            "refused",
            "unable to",
            "no ",
            // "This system is not configured to relay mail" (Exchange, appliances).
            "not configured to",
        ],
    ),
    // The sender should hand its mail to its provider's server: a dynamic or residential
    // address, or a network on a block list ("use the smtp server of your ISP", "contact
    // your Internet service provider").
    (
        "use-your-isp",
        Reason::Blocked,
        &["your isp", "internet service provider"],
        &["server of", "contact your", "relay through", "through your"],
    ),
    // Too much mail at once: too many recipients or connections, a rate over a limit.
    (
        "too-much-mail",
        Reason::TooManyConn,
        &["recipients", "connections", "sessions", " rate"],
        &["too many", "limit", "exceeded", "prevents", "too high"],
    ),
    // The recipient domain has no usable MX: it takes no mail (RFC 7505 in spirit).
    (
        "no-mx",
        Reason::NotAccept,
        &["mx record", "type=mx"],
        &["no", "not found", "missing", "not correct", "misconfigured"],
    ),
    (
        "delivery-expired",
        Reason::Expired,
        &["message", "delivery", "queue", "retry", "retries"],
        &[
            "expired",
            "timed out",
            "timeout",
            "too long",
            "gave up",
            "giving up",
        ],
    ),
    (
        "connection-failed",
        Reason::NetworkError,
        &["connection", "connect", "host", "name server", "dns"],
        &[
            "refused",
            "timed out",
            "reset",
            "lost",
            "unreachable",
            "not reachable",
            "failed",
        ],
    ),
];
