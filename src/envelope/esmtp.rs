//! ESMTP parameters a client gave with MAIL and RCPT that travel with the message: the
//! session parses them, the queue stores them ([`MessageParams`] per message, [`RcptParams`]
//! per recipient), delivery passes them to the next hop and honours them in mxgate's own
//! DSNs.
//!
//! - RFC 6531 SMTPUTF8, RFC 6152 / RFC 3030 `BODY=8BITMIME|BINARYMIME`;
//! - RFC 3461 DSN: `RET`, `ENVID` (MAIL), `NOTIFY`, `ORCPT` (RCPT), kept in their wire form
//!   (xtext) so they are passed on byte for byte; [`xtext_decode`] for the DSN fields;
//! - RFC 8689 REQUIRETLS.
//!
//! Stored as JSON beside the other meta fields; every field has a default and is left out
//! when it has it, so records written before these existed decode unchanged and a message
//! without parameters is stored exactly as before.

use serde::{Deserialize, Serialize};

/// RFC 1652 / RFC 3030 BODY parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BodyType {
    #[default]
    #[serde(rename = "7bit")]
    SevenBit,
    #[serde(rename = "8bitmime")]
    EightBitMime,
    /// Only with BDAT (RFC 3030 §3); bare CR/LF are then allowed in the content.
    #[serde(rename = "binarymime")]
    BinaryMime,
}

impl BodyType {
    fn is_default(&self) -> bool {
        *self == BodyType::SevenBit
    }
}

/// RFC 3461 §4.3 RET: what a failure DSN returns of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ret {
    Full,
    Hdrs,
}

impl Ret {
    /// `FULL` / `HDRS`, case-insensitive (the parser checked the value).
    pub fn parse(v: &str) -> Option<Ret> {
        if v.eq_ignore_ascii_case("FULL") {
            Some(Ret::Full)
        } else if v.eq_ignore_ascii_case("HDRS") {
            Some(Ret::Hdrs)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// RFC 3461 §4.1 NOTIFY: `NEVER` (all false) or a list of SUCCESS, FAILURE, DELAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    pub fn parse(v: &str) -> Option<Notify> {
        if v.eq_ignore_ascii_case("NEVER") {
            return Some(Notify {
                success: false,
                failure: false,
                delay: false,
            });
        }
        let mut n = Notify {
            success: false,
            failure: false,
            delay: false,
        };
        for word in v.split(',') {
            let slot = match word.to_ascii_uppercase().as_str() {
                "SUCCESS" => &mut n.success,
                "FAILURE" => &mut n.failure,
                "DELAY" => &mut n.delay,
                _ => return None,
            };
            *slot = true;
        }
        Some(n)
    }

    /// The wire form, passed on to a next hop that offers DSN.
    pub fn wire(self) -> String {
        let words: Vec<&str> = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .into_iter()
        .filter_map(|(on, w)| on.then_some(w))
        .collect();
        if words.is_empty() {
            "NEVER".into()
        } else {
            words.join(",")
        }
    }
}

/// Per message: MAIL FROM's parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageParams {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smtputf8: bool,
    #[serde(default, skip_serializing_if = "BodyType::is_default")]
    pub body: BodyType,
    /// ENVID, xtext as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    /// RFC 8689: only over verified TLS to a hop that offers REQUIRETLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requiretls: bool,
}

impl MessageParams {
    pub fn is_default(&self) -> bool {
        *self == MessageParams::default()
    }
}

/// Per recipient: RCPT TO's parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcptParams {
    /// `None`: not given (the MTA's default: failures, and delays as configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// ORCPT, `addr-type;xtext` as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

impl RcptParams {
    pub fn is_default(&self) -> bool {
        *self == RcptParams::default()
    }

    /// Whether a failure (bounce or expiry) DSN is wanted: unless NOTIFY leaves FAILURE out.
    pub fn wants_failure(&self) -> bool {
        self.notify.is_none_or(|n| n.failure)
    }

    /// Whether a delay DSN is allowed: unless NOTIFY leaves DELAY out.
    pub fn wants_delay(&self) -> bool {
        self.notify.is_none_or(|n| n.delay)
    }

    /// Whether a success DSN was asked for (RFC 3461 §4.1: only when NOTIFY says SUCCESS).
    pub fn wants_success(&self) -> bool {
        self.notify.is_some_and(|n| n.success)
    }
}

/// What a session hands the queue besides the message: the MAIL parameters and one
/// [`RcptParams`] per recipient, in the order of `NewMessage::recipients` (missing entries
/// are the defaults).
#[derive(Clone, Debug, Default)]
pub struct Esmtp {
    pub message: MessageParams,
    pub recipients: Vec<RcptParams>,
}

/// RFC 3461 §4: `+XX` escapes decoded; a malformed escape is kept as it is.
pub fn xtext_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'+', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_parses_and_prints_back() {
        let n = Notify::parse("success,Delay").expect("valid");
        assert!(n.success && n.delay && !n.failure);
        assert_eq!(n.wire(), "SUCCESS,DELAY");
        assert_eq!(Notify::parse("NEVER").expect("never").wire(), "NEVER");
        assert_eq!(Notify::parse("SOMETIMES"), None);
    }

    #[test]
    fn absent_notify_wants_failures_and_delays_but_no_success() {
        let r = RcptParams::default();
        assert!(r.wants_failure() && r.wants_delay() && !r.wants_success());
        let never = RcptParams {
            notify: Notify::parse("NEVER"),
            orcpt: None,
        };
        assert!(!never.wants_failure() && !never.wants_delay() && !never.wants_success());
    }

    #[test]
    fn xtext_escapes_are_decoded() {
        assert_eq!(xtext_decode("rfc822;a+2Bb@x.test"), "rfc822;a+b@x.test");
        assert_eq!(xtext_decode("id+3D1+"), "id=1+");
        assert_eq!(xtext_decode("+zz"), "+zz");
    }

    #[test]
    fn default_params_serialize_to_nothing() {
        assert_eq!(
            serde_json::to_string(&MessageParams::default()).expect("json"),
            "{}"
        );
        let p: MessageParams =
            serde_json::from_str(r#"{"body":"8bitmime","ret":"hdrs","requiretls":true}"#)
                .expect("decode");
        assert_eq!(p.body, BodyType::EightBitMime);
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert!(p.requiretls && !p.smtputf8);
    }
}
