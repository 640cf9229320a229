//! [`AuthVerdict`]: the owned outcome of every check on one message, as RFC 8601 results.

use std::net::IpAddr;

/// An RFC 8601 §2.7 result value. One enum for every method: each method uses a subset
/// (`softfail` is SPF only, `policy` is unused today).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl AuthResult {
    /// The result keyword, also the `result` label of `mxgate_auth_results_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

impl std::fmt::Display for AuthResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which identity an SPF check authorised (RFC 7208 §2.3, §2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpfIdentity {
    Helo,
    MailFrom,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpfCheck {
    pub identity: SpfIdentity,
    pub result: AuthResult,
    /// The checked identity: the HELO name, or the MAIL FROM address (`postmaster@helo`
    /// for the null sender, RFC 7208 §2.4).
    pub subject: String,
    /// The domain whose record was evaluated (DMARC aligns against it).
    pub domain: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimCheck {
    pub result: AuthResult,
    /// `d=` of the signature; empty for `dkim=none` and unparsable signatures.
    pub domain: String,
    pub selector: String,
    /// First 8 base64 characters of `b=`, RFC 6008: tells several signatures apart.
    pub b_prefix: String,
    /// Why it did not pass, for the header comment.
    pub reason: Option<String>,
}

/// DMARC published policy after the `t=` test-mode reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

impl DmarcPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmarcCheck {
    pub result: AuthResult,
    /// RFC 5322 From domain (the Author Domain).
    pub header_from: String,
    pub policy: DmarcPolicy,
    /// A policy record was found (false: none published, or the lookup failed).
    pub policy_known: bool,
    /// An aligned SPF pass (RFC 7489 §3.1.2).
    pub spf_aligned: bool,
    /// An aligned DKIM pass (RFC 7489 §3.1.1).
    pub dkim_aligned: bool,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArcCheck {
    pub result: AuthResult,
    /// Number of ARC sets on the message (0 = no chain).
    pub sets: usize,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IprevCheck {
    pub result: AuthResult,
    /// The PTR name that resolved back to the client, when it passed.
    pub ptr: Option<String>,
    pub reason: Option<String>,
}

/// Everything verification found out about one message. `None` = method switched off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthVerdict {
    pub peer_ip: IpAddr,
    pub spf_helo: Option<SpfCheck>,
    pub spf_mail_from: Option<SpfCheck>,
    /// One per DKIM-Signature; a single `none` entry when the message has none.
    pub dkim: Vec<DkimCheck>,
    pub dmarc: Option<DmarcCheck>,
    pub arc: Option<ArcCheck>,
    pub iprev: Option<IprevCheck>,
}

impl AuthVerdict {
    /// A verdict with no method run (checks off).
    pub fn unchecked(peer_ip: IpAddr) -> AuthVerdict {
        AuthVerdict {
            peer_ip,
            spf_helo: None,
            spf_mail_from: None,
            dkim: Vec::new(),
            dmarc: None,
            arc: None,
            iprev: None,
        }
    }

    /// The SPF result that speaks for the envelope: MAIL FROM, else HELO.
    pub fn spf(&self) -> Option<&SpfCheck> {
        self.spf_mail_from.as_ref().or(self.spf_helo.as_ref())
    }

    /// Best DKIM result over all signatures (pass > temperror > fail ... > none).
    pub fn dkim_summary(&self) -> Option<AuthResult> {
        let rank = |r: AuthResult| match r {
            AuthResult::Pass => 0,
            AuthResult::TempError => 1,
            AuthResult::Fail => 2,
            AuthResult::PermError => 3,
            AuthResult::Neutral => 4,
            AuthResult::SoftFail => 5,
            AuthResult::None => 6,
        };
        self.dkim.iter().map(|d| d.result).min_by_key(|r| rank(*r))
    }

    /// Short summary for the ERP push header `X-Mxgate-Auth`, e.g.
    /// `spf=pass dkim=pass dmarc=pass arc=none iprev=pass`; a failing DMARC check with a
    /// policy adds `dmarc.policy=quarantine|reject`, a quarantined message (delivered,
    /// tagged) `disposition=quarantine`. Switched-off methods are left out; with every
    /// method off it is `none`.
    pub fn erp_header(&self, quarantined: bool) -> String {
        let mut parts = Vec::with_capacity(6);
        if let Some(s) = self.spf() {
            parts.push(format!("spf={}", s.result));
        }
        if let Some(d) = self.dkim_summary() {
            parts.push(format!("dkim={d}"));
        }
        if let Some(d) = &self.dmarc {
            parts.push(format!("dmarc={}", d.result));
            if d.result == AuthResult::Fail && d.policy != DmarcPolicy::None {
                parts.push(format!("dmarc.policy={}", d.policy.as_str()));
            }
        }
        if let Some(a) = &self.arc {
            parts.push(format!("arc={}", a.result));
        }
        if let Some(i) = &self.iprev {
            parts.push(format!("iprev={}", i.result));
        }
        if quarantined {
            parts.push("disposition=quarantine".to_string());
        }
        if parts.is_empty() {
            return "none".to_string();
        }
        parts.join(" ")
    }

    /// `(method, result)` pairs for `mxgate_auth_results_total`: one per SPF identity,
    /// per DKIM signature, and one each for DMARC, ARC and iprev.
    pub fn metric_labels(&self) -> Vec<(&'static str, &'static str)> {
        let mut v = Vec::with_capacity(4 + self.dkim.len());
        if let Some(s) = self.spf() {
            v.push(("spf", s.result.as_str()));
        }
        v.extend(self.dkim.iter().map(|d| ("dkim", d.result.as_str())));
        if let Some(d) = &self.dmarc {
            v.push(("dmarc", d.result.as_str()));
        }
        if let Some(a) = &self.arc {
            v.push(("arc", a.result.as_str()));
        }
        if let Some(i) = &self.iprev {
            v.push(("iprev", i.result.as_str()));
        }
        v
    }
}
