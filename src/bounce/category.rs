//! The closed vocabularies of bounce classification: the eight SPEC categories, the finer
//! `Reason` they are derived from, and permanent vs transient.
//!
//! `Reason` follows the reason names of sisimai (the reference bounce parser whose results
//! label the shared corpus), so a reason maps to exactly one `Category` and "hard" means the
//! same thing there and here: userunknown, hostunknown, hasmoved, notaccept.

use serde::Serialize;

/// A SPEC bounce category. Serialises as the exact SPEC name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Category {
    Blocked,
    #[serde(rename = "DMARC")]
    Dmarc,
    #[serde(rename = "Invalid address")]
    InvalidAddress,
    Mailbox,
    #[serde(rename = "Mailbox Full")]
    MailboxFull,
    #[serde(rename = "Rate Limit")]
    RateLimit,
    #[serde(rename = "Recipient Error")]
    RecipientError,
    Rejection,
}

impl Category {
    /// Every category, in SPEC order (the dashboard lists them so).
    pub const ALL: &'static [Category] = &[
        Category::Blocked,
        Category::Dmarc,
        Category::InvalidAddress,
        Category::Mailbox,
        Category::MailboxFull,
        Category::RateLimit,
        Category::RecipientError,
        Category::Rejection,
    ];

    /// The exact SPEC name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::Blocked => "Blocked",
            Category::Dmarc => "DMARC",
            Category::InvalidAddress => "Invalid address",
            Category::Mailbox => "Mailbox",
            Category::MailboxFull => "Mailbox Full",
            Category::RateLimit => "Rate Limit",
            Category::RecipientError => "Recipient Error",
            Category::Rejection => "Rejection",
        }
    }

    /// Parses a SPEC name back (exact match).
    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.iter().copied().find(|c| c.as_str() == name)
    }

    /// What the category means (corpus README table, first half).
    pub fn definition(&self) -> &'static str {
        match self {
            Category::Blocked => {
                "A policy or rule at the receiver stopped the mail (content, size, org rules, reputation)."
            }
            Category::Dmarc => "The From domain is not aligned with the SPF/DKIM-verified domain.",
            Category::InvalidAddress => "The address does not exist or is malformed.",
            Category::Mailbox => {
                "The domain has no active mailbox for the address (disabled, inactive)."
            }
            Category::MailboxFull => "The mailbox is out of storage, often temporarily.",
            Category::RateLimit => {
                "The receiver is refusing because too much mail arrives too fast."
            }
            Category::RecipientError => {
                "Restrictions, connectivity failures or tenant limits on the recipient side, incl. \"expired after retries\"."
            }
            Category::Rejection => {
                "Sending-domain DNS problems (SPF/DKIM/DMARC records missing or invalid), message too large, too many hops, mail loops."
            }
        }
    }

    /// What the sender should do (corpus README table, second half).
    pub fn fix_tip(&self) -> &'static str {
        match self {
            Category::Blocked => "Check blocklists, content and authentication.",
            Category::Dmarc => "Align From, fix SPF/DKIM, check the DMARC policy.",
            Category::InvalidAddress => "Remove or revalidate the address.",
            Category::Mailbox => "Validate the address and domain.",
            Category::MailboxFull => "Retry later.",
            Category::RateLimit => "Slow down, send smaller batches.",
            Category::RecipientError => {
                "Check the recipient side (connectivity, restrictions, tenant limits); retry later."
            }
            Category::Rejection => "Fix DNS, shrink the message, fix routing.",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Permanent (5xx, gave up) or transient (4xx, will be retried).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    Permanent,
    Transient,
}

impl DeliveryKind {
    /// The metric label value (`kind` label of `mxgate_bounces_total`).
    pub fn as_label(&self) -> &'static str {
        match self {
            DeliveryKind::Permanent => "permanent",
            DeliveryKind::Transient => "transient",
        }
    }
}

macro_rules! reasons {
    ($($variant:ident => $name:literal, $cat:ident;)*) => {
        /// The fine-grained reason behind a category (sisimai's reason names).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum Reason { $($variant,)* }

        impl Reason {
            /// sisimai's name of the reason.
            pub fn as_str(&self) -> &'static str {
                match self { $(Reason::$variant => $name,)* }
            }
            /// The SPEC category the reason belongs to (corpus README mapping).
            pub fn category(&self) -> Category {
                match self { $(Reason::$variant => Category::$cat,)* }
            }
        }
    };
}

reasons! {
    UserUnknown => "userunknown", InvalidAddress;
    HostUnknown => "hostunknown", InvalidAddress;
    HasMoved => "hasmoved", InvalidAddress;
    NotAccept => "notaccept", InvalidAddress;
    Suppressed => "suppressed", InvalidAddress;
    Suspend => "suspend", Mailbox;
    MailboxFull => "mailboxfull", MailboxFull;
    AuthFailure => "authfailure", Dmarc;
    TooManyConn => "toomanyconn", RateLimit;
    Speeding => "speeding", RateLimit;
    Blocked => "blocked", Blocked;
    BadReputation => "badreputation", Blocked;
    RequirePtr => "requireptr", Blocked;
    SpamDetected => "spamdetected", Blocked;
    VirusDetected => "virusdetected", Blocked;
    PolicyViolation => "policyviolation", Blocked;
    Rejected => "rejected", Rejection;
    Filtered => "filtered", Rejection;
    MesgTooBig => "mesgtoobig", Rejection;
    ExceedLimit => "exceedlimit", Rejection;
    ContentError => "contenterror", Rejection;
    NotCompliantRfc => "notcompliantrfc", Rejection;
    NoRelaying => "norelaying", Rejection;
    SyntaxError => "syntaxerror", Rejection;
    SecurityError => "securityerror", Rejection;
    FailedStartTls => "failedstarttls", Rejection;
    Expired => "expired", RecipientError;
    NetworkError => "networkerror", RecipientError;
    SystemError => "systemerror", RecipientError;
    SystemFull => "systemfull", RecipientError;
    MailerError => "mailererror", RecipientError;
    Undefined => "undefined", RecipientError;
}

impl Reason {
    /// sisimai's hard bounce: the address itself is dead, retrying can never succeed.
    pub fn is_hard(&self) -> bool {
        matches!(
            self,
            Reason::UserUnknown | Reason::HostUnknown | Reason::HasMoved | Reason::NotAccept
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_names_round_trip_and_serialise_as_spec_names() {
        for c in Category::ALL {
            assert_eq!(Category::from_name(c.as_str()), Some(*c));
            let json = serde_json::to_string(c).expect("serialise");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert!(!c.definition().is_empty() && !c.fix_tip().is_empty());
        }
    }

    #[test]
    fn only_dead_address_reasons_are_hard() {
        assert!(Reason::UserUnknown.is_hard());
        assert!(!Reason::MailboxFull.is_hard());
        assert!(!Reason::Suppressed.is_hard());
        assert_eq!(Reason::Suspend.category(), Category::Mailbox);
    }
}
