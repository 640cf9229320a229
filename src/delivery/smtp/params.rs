//! What MAIL and RCPT carry to one hop, from the message's stored ESMTP parameters and
//! what the hop's EHLO offered — or why the message may not go to this hop at all.
//! Sans-IO: decided before MAIL is sent, so a refusal leaves the session in sync.
//!
//! - RFC 6531 §3.5: a non-ASCII envelope address needs SMTPUTF8; a hop without it gets
//!   nothing and the recipient fails with 5.6.7. SMTPUTF8 declared with ASCII addresses is
//!   passed when offered and dropped when not (only the envelope needs it here).
//! - RFC 6152 §3: `BODY=8BITMIME` to a hop without 8BITMIME: content that is 7-bit anyway
//!   goes as it is; 8-bit content is **not** converted to quoted-printable/base64 but fails
//!   with 5.6.3 — submitted mail carries our DKIM signature over the body, and a
//!   conversion would break it (every major receiver offers 8BITMIME, so this is rare).
//! - RFC 3030: `BODY=BINARYMIME` goes by BDAT to a hop with BINARYMIME and CHUNKING;
//!   otherwise content that is valid as 8BITMIME (CRLF lines of at most 998 octets, no
//!   NUL) is sent as such, the rest fails with 5.6.3.
//! - RFC 3461: RET/ENVID on MAIL and NOTIFY/ORCPT on RCPT only to a hop offering DSN.
//! - RFC 8689 §4.2.1: a REQUIRETLS message only over TLS with a verified certificate, to a
//!   hop that offers REQUIRETLS, and the parameter goes with it.

use smtp_proto::{
    EXT_8BIT_MIME, EXT_BINARY_MIME, EXT_CHUNKING, EXT_DSN, EXT_REQUIRE_TLS, EXT_SMTP_UTF8,
};

use super::Envelope;
use crate::envelope::esmtp::BodyType;

/// The parameter suffixes of MAIL and RCPT (each starting with a space, or empty).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Wire {
    pub mail: String,
    pub rcpt: String,
    /// Send the content with `BDAT LAST` (BINARYMIME), not DATA.
    pub bdat: bool,
}

/// Why this hop cannot take the message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Non-ASCII address, no SMTPUTF8 (permanent).
    Smtputf8,
    /// 8-bit or binary content the hop cannot take unconverted (permanent).
    EightBit,
    /// REQUIRETLS conditions unmet on this hop; another hop may meet them.
    RequireTls(&'static str),
}

/// The hop's EHLO keywords (`capabilities` bits) and whether the session runs over TLS
/// with a verified certificate.
pub(super) fn negotiate(
    env: &Envelope<'_>,
    caps: u32,
    verified_tls: bool,
) -> Result<Wire, Refusal> {
    let has = |ext: u32| caps & ext != 0;
    let mut w = Wire::default();
    let msg = env.esmtp;
    if msg.requiretls {
        if !verified_tls {
            return Err(Refusal::RequireTls("no TLS with a verified certificate"));
        }
        if !has(EXT_REQUIRE_TLS) {
            return Err(Refusal::RequireTls("REQUIRETLS not offered"));
        }
    }
    let needs_utf8 = !env.from.is_ascii() || !env.to.is_ascii();
    if (needs_utf8 || msg.smtputf8) && has(EXT_SMTP_UTF8) {
        w.mail.push_str(" SMTPUTF8");
    } else if needs_utf8 {
        return Err(Refusal::Smtputf8);
    }
    match msg.body {
        BodyType::SevenBit => {}
        BodyType::BinaryMime if has(EXT_BINARY_MIME) && has(EXT_CHUNKING) => {
            w.mail.push_str(" BODY=BINARYMIME");
            w.bdat = true;
        }
        BodyType::BinaryMime if !is_8bitmime(env.body) => return Err(Refusal::EightBit),
        BodyType::EightBitMime | BodyType::BinaryMime => {
            if has(EXT_8BIT_MIME) {
                w.mail.push_str(" BODY=8BITMIME");
            } else if !env.body.is_ascii() {
                return Err(Refusal::EightBit);
            }
        }
    }
    if msg.requiretls {
        w.mail.push_str(" REQUIRETLS");
    }
    if has(EXT_DSN) {
        if let Some(ret) = msg.ret {
            w.mail.push_str(" RET=");
            w.mail.push_str(ret.as_str());
        }
        if let Some(envid) = &msg.envid {
            w.mail.push_str(" ENVID=");
            w.mail.push_str(envid);
        }
        if let Some(notify) = env.rcpt.notify {
            w.rcpt.push_str(" NOTIFY=");
            w.rcpt.push_str(&notify.wire());
        }
        if let Some(orcpt) = &env.rcpt.orcpt {
            w.rcpt.push_str(" ORCPT=");
            w.rcpt.push_str(orcpt);
        }
    }
    Ok(w)
}

/// RFC 6152 §2 / RFC 5321 §4.5.3.1.6: CRLF lines of at most 998 octets, no NUL, no bare
/// CR or LF — what DATA can carry as 8BITMIME.
fn is_8bitmime(body: &[u8]) -> bool {
    let mut line = 0usize;
    let mut prev = 0u8;
    for (i, &b) in body.iter().enumerate() {
        match b {
            0 => return false,
            b'\n' if prev != b'\r' => return false,
            b'\n' => line = 0,
            b'\r' if body.get(i + 1) != Some(&b'\n') => return false,
            b'\r' => {}
            _ => {
                line += 1;
                if line > 998 {
                    return false;
                }
            }
        }
        prev = b;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::esmtp::{MessageParams, Notify, RcptParams, Ret};

    fn env<'a>(
        to: &'a str,
        body: &'a [u8],
        m: &'a MessageParams,
        r: &'a RcptParams,
    ) -> Envelope<'a> {
        Envelope {
            from: "bounce+x@relay.test",
            to,
            body,
            esmtp: m,
            rcpt: r,
        }
    }

    const ALL: u32 =
        EXT_8BIT_MIME | EXT_BINARY_MIME | EXT_CHUNKING | EXT_DSN | EXT_REQUIRE_TLS | EXT_SMTP_UTF8;

    #[test]
    fn everything_offered_passes_every_parameter() {
        let m = MessageParams {
            smtputf8: true,
            body: BodyType::EightBitMime,
            envid: Some("QQ+2B1".into()),
            ret: Some(Ret::Hdrs),
            requiretls: true,
        };
        let r = RcptParams {
            notify: Notify::parse("SUCCESS,FAILURE"),
            orcpt: Some("rfc822;bob@x.test".into()),
        };
        let w = negotiate(&env("bob@x.test", b"x\r\n", &m, &r), ALL, true).expect("ok");
        assert_eq!(
            w.mail,
            " SMTPUTF8 BODY=8BITMIME REQUIRETLS RET=HDRS ENVID=QQ+2B1"
        );
        assert_eq!(w.rcpt, " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@x.test");
        assert!(!w.bdat);
    }

    #[test]
    fn nothing_offered_sends_bare_commands_or_refuses() {
        let r = RcptParams::default();
        let m = MessageParams {
            smtputf8: true,
            body: BodyType::EightBitMime,
            ..MessageParams::default()
        };
        let w = negotiate(&env("bob@x.test", b"plain\r\n", &m, &r), 0, false).expect("ok");
        assert_eq!(w, Wire::default());
        let utf8 = negotiate(&env("jürgen@x.test", b"x\r\n", &m, &r), 0, false);
        assert_eq!(utf8, Err(Refusal::Smtputf8));
        let eight = negotiate(&env("bob@x.test", "grüße\r\n".as_bytes(), &m, &r), 0, false);
        assert_eq!(eight, Err(Refusal::EightBit));
    }

    #[test]
    fn binarymime_uses_bdat_or_falls_back_to_8bitmime() {
        let r = RcptParams::default();
        let m = MessageParams {
            body: BodyType::BinaryMime,
            ..MessageParams::default()
        };
        let w = negotiate(&env("b@x.test", b"a\rb", &m, &r), ALL, false).expect("ok");
        assert!(w.bdat && w.mail == " BODY=BINARYMIME");
        let w = negotiate(
            &env("b@x.test", "ä\r\n".as_bytes(), &m, &r),
            EXT_8BIT_MIME,
            false,
        )
        .expect("ok");
        assert!(!w.bdat && w.mail == " BODY=8BITMIME");
        let bare_cr = negotiate(&env("b@x.test", b"a\rb", &m, &r), EXT_8BIT_MIME, false);
        assert_eq!(bare_cr, Err(Refusal::EightBit));
    }

    #[test]
    fn requiretls_needs_verified_tls_and_the_keyword() {
        let r = RcptParams::default();
        let m = MessageParams {
            requiretls: true,
            ..MessageParams::default()
        };
        let e = env("b@x.test", b"x\r\n", &m, &r);
        assert!(matches!(
            negotiate(&e, ALL, false),
            Err(Refusal::RequireTls(_))
        ));
        assert!(matches!(
            negotiate(&e, ALL & !EXT_REQUIRE_TLS, true),
            Err(Refusal::RequireTls(_))
        ));
        assert_eq!(negotiate(&e, ALL, true).expect("ok").mail, " REQUIRETLS");
    }
}
