//! Phrases naming the sender's or the message's fault: authentication, reputation, spam,
//! policy, relaying, rate.

use crate::bounce::category::Reason;

/// Matched before everything else: the text names the cause unambiguously.
pub(super) const STRONG: &[(Reason, &[&str])] = &[
    (
        Reason::Expired,
        &[
            "message expired", "delivery expired",
            "queue too long", "could not deliver for the last", "retry time not reached",
            "too long in queue", "message timed out", "queue.expired",
        ],
    ),
    (
        Reason::MailerError,
        &[
            "procmail", "pipe to |", "x-unix;", "command died with status", "mailer error",
            "command failed:", "command output:",
        ],
    ),
    (
        Reason::NetworkError,
        &[
            "host not found, try again", "temporary failure in name resolution",
            "malformed or unexpected name server reply", "hop count exceeded", "mail loop",
        ],
    ),
    (
        Reason::AuthFailure,
        &[
            "dmarc policy", "dmarc rejection", "dmarcrejection", "dmarc verification",
            "failed dmarc", "dmarc check", "did not pass dmarc", "dmarc validation",
            "unauthenticated email", "bad spf records", "spf check: fail",
            "sender policy framework", "spf fail", "spf validation", "spf record",
            "spf.pobox.com", "please inspect your spf", "dkim signature", "dkim check",
            "failed dkim", "dkim validation", "not pass spf", "sender authentication failed",
            "does not designate", "spf: fail", "spf=fail", "dkim=fail", "dmarc=fail",
            "is not aligned", "authentication checks did not pass",
            "sender domain authentication", "sending domain is not authenticated",
            "message failed authentication",
        ],
    ),
    (
        Reason::RequirePtr,
        &[
            "cannot find your hostname", "cannot find your reverse hostname",
            "reverse dns", "reverse lookup", "ptr record", "no ptr", "rdns",
            "ip name lookup failed", "unresolvable relay host name",
            "client host rejected: cannot find", "no matches to nameserver query", "your host name doesn't match", "hostname does not match",
            "must resolve", "reverse hostname", "not have a ptr", "without valid ptr",
            "does not have a valid ptr", "has no reverse", "reverse-dns", "fcrdns",
            "domain name lookup failed", "unknown host, you are not allowed",
            "reverse of your ip", "is not associated with a fully qualified domain name",
            "mismatches client ip", "does not match your ip", "helo does not match",
        ],
    ),
    (
        Reason::Rejected,
        &[
            "sender address rejected", "sender rejected", "domain of sender address",
            "sender domain must exist", "sender verify failed", "unroutable sender",
            "sender email address rejected", "sender not pre-approved", "sender is spammer",
            "sender address has been blacklisted", "sender domain is empty",
            "null sender is not allowed", "empty envelope senders not allowed",
            "batv", "mail from not owned by user", "is not a member", "not a member of",
            "members-only list", "not allowed to post", "returned mail not accepted here",
            "address verification failed for sender", "unverified sender", "invalid sender",
            "sender address is not valid", "bad sender", "sender unknown",
            "fully qualified email address required", "from: domain is invalid",
            "envelope blocked", "sender is not authorized", "sender blocked",
            "address that has been blacklisted", "address is not verified",
            "not a registered gateway user",
        ],
    ),
];


/// Anti-abuse and policy verdicts on the sender, its IP or the message.
pub(super) const POLICY: &[(Reason, &[&str])] = &[
    (
        Reason::NoRelaying,
        &[
            "relay access denied", "relaying denied", "relay denied", "not permitted to relay",
            "not allowed to relay", "unable to relay", "no relaying", "relay not permitted",
            "relaying not allowed", "insecure mail relay", "not a gateway",
            "configured to relay mail", "relaying mail to", "relay prohibited",
            "we don't handle mail for", "as a relay", "open relay", "relay not allowed",
            "not local host", "relaying is prohibited",
        ],
    ),
    (
        Reason::VirusDetected,
        &[
            "virus", "malware", "potentially executable", "infected", "malicious",
            "harmful content", "trojan", "illegal attachment", "prohibited attachment",
            "attachment type", "executable attachment",
        ],
    ),
    (
        Reason::PolicyViolation,
        &[
            "policy reasons", "denied by policy", "policy violation", "violates policy",
            "rejected by policy", "rejected due to policy", "against policy",
            "local policy", "message policy", "content policy", "policy rejection",
            "prohibited by policy", "policy restrictions", "by the content scanner",
            "not accepting mail with", "breaches policy", "policy-reject",
            "due to organizational policy", "refused by policy", "protocol violation",
            "violation",
        ],
    ),
    (
        Reason::SpamDetected,
        &[
            "spam", "junk mail", "unsolicited", "bulk mail", "rejected as bulk",
            "content filter", "content rejected", "message content", "dt:spm", "uce",
            "classified as", "message filtered. please see", "looks like spam",
            "suspicious", "phishing", "scam", "rejected by filter", "blacklisted url",
            "mail appears to be unsolicited", "identified as", "high probability",
        ],
    ),
    (
        Reason::BadReputation,
        &[
            "reputation", "poor reputation", "ip/domain reputation",
            "temporarily deferred due to unexpected volume or user complaints",
            "due to user complaints", "sender score", "senderscore", "tss04",
        ],
    ),
    (
        Reason::Speeding,
        &[
            "try again slower", "rate limit", "rate-limit", "ratelimit", "too fast",
            "receiving mail at a rate", "rate that prevents", "sending rate",
            "exceeded the rate", "message rate", "frequency limit", "slow down",
            "too many messages", "hourly limit", "daily limit", "exceeded the max emails",
            "throttl", "sending quota", "message quota exceeded", "daily message quota",
            "too many emails", "submission rate", "exceeded its sending limit",
            "recipient limit", "has exceeded", "too many mails",
        ],
    ),
    (
        Reason::TooManyConn,
        &[
            "too many connections", "too many concurrent", "connection limit",
            "maximum connection", "too many smtp sessions", "too many sessions",
            "too many recipients", "connections from your host", "too many errors",
            "trop de connexions", "connection rate", "too many simultaneous",
            "too many hosts", "numerous attempts", "concurrency limit",
        ],
    ),
    (
        Reason::Blocked,
        &[
            "blocked using", "blacklisted", "blocklisted", "blacklist", "blocklist",
            "listed in", "listed at", "listed on", "dnsbl", "rbl", "spamhaus", "spamcop",
            "sorbs", "barracuda", "client host rejected", "client host",
            "not allowed to connect", "invalid ip", "connections will not be accepted",
            "connection not allowed", "ip address blocked", "ip blocked", "blocked",
            "banned", "your ip", "your network", "ip address", "we do not accept mail from",
            "suspiciously like spammer", "not accepting mail from",
            "please use the smtp server of your isp", "dynamic ip", "dial-up", "dialup",
            "residential", "block",
        ],
    ),
];
