//! RFC 8461 parsing, sans I/O: the `_mta-sts` TXT record (§3.1), the policy file (§3.2)
//! and the MX host patterns it lists (§4.1).

/// Why a TXT record or a policy file is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no v=STSv1 record")]
    NoRecord,
    #[error("{0} v=STSv1 records (RFC 8461 §3.1 wants exactly one)")]
    ManyRecords(usize),
    #[error("the record has no valid id")]
    NoId,
    #[error("policy: {0}")]
    Policy(String),
}

/// §3.1: the `id` of the one TXT string at `_mta-sts.<domain>` that starts with
/// `v=STSv1;` (other TXT records there are ignored).
pub fn record_id(txts: &[String]) -> Result<String, ParseError> {
    let sts: Vec<&String> = txts
        .iter()
        .filter(|t| {
            t.trim_start().strip_prefix("v=STSv1").is_some_and(|rest| {
                rest.trim_start().is_empty() || rest.trim_start().starts_with(';')
            })
        })
        .collect();
    let record = match sts.as_slice() {
        [] => return Err(ParseError::NoRecord),
        [one] => *one,
        many => return Err(ParseError::ManyRecords(many.len())),
    };
    record
        .split(';')
        .filter_map(|field| field.trim().split_once('='))
        .find(|(k, _)| k.trim() == "id")
        .map(|(_, v)| v.trim().to_string())
        // sts-id = 1*32(ALPHA / DIGIT)
        .filter(|id| {
            !id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric())
        })
        .ok_or(ParseError::NoId)
}

/// A policy's `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// `mx` patterns as written, lower case: `mail.example.com`, `*.example.net`.
    pub mx: Vec<String>,
    /// Seconds the policy may be cached (§3.2: at most 31557600).
    pub max_age: u64,
}

/// §3.2: at most one year.
const MAX_AGE_LIMIT: u64 = 31_557_600;

impl Policy {
    /// Parses the body of `/.well-known/mta-sts.txt`: `key: value` lines (CRLF or LF),
    /// `version: STSv1`, `mode`, `max_age` and (unless mode is `none`) at least one `mx`.
    /// Unknown keys are ignored (§3.2, for extensions).
    pub fn parse(text: &str) -> Result<Policy, ParseError> {
        let bad = |m: &str| ParseError::Policy(m.to_string());
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                return Err(bad(&format!("line {line:?} is not \"key: value\"")));
            };
            let v = v.trim();
            match k.trim() {
                "version" => version = Some(v.to_string()),
                "mode" => {
                    mode = Some(match v {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(bad(&format!("unknown mode {other:?}"))),
                    })
                }
                "max_age" => {
                    let n: u64 = v
                        .parse()
                        .map_err(|_| bad(&format!("max_age {v:?} is not a number")))?;
                    max_age = Some(n.min(MAX_AGE_LIMIT));
                }
                "mx" => mx.push(v.to_ascii_lowercase()),
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err(bad("version is not STSv1"));
        }
        let mode = mode.ok_or_else(|| bad("no mode"))?;
        let max_age = max_age.ok_or_else(|| bad("no max_age"))?;
        if mx.is_empty() && mode != Mode::None {
            return Err(bad("no mx"));
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// §4.1: whether MX host `host` is one the policy names. `*.example.com` stands for
    /// exactly one leftmost label (`mx.example.com`, not `a.mx.example.com` nor
    /// `example.com`); comparison is case-insensitive, a trailing dot ignored.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|pattern| {
            let pattern = pattern.trim_end_matches('.');
            match pattern.strip_prefix("*.") {
                Some(base) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
                None => host == pattern,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_sts_record_gives_its_id_and_other_txt_records_are_ignored() {
        let got = record_id(&txt(&["v=spf1 -all", "v=STSv1; id=20160831085700Z;"]));
        assert_eq!(got, Ok("20160831085700Z".to_string()));
        assert_eq!(record_id(&txt(&["v=STSv1;id=abc"])), Ok("abc".into()));
        assert_eq!(record_id(&txt(&[])), Err(ParseError::NoRecord));
        assert_eq!(
            record_id(&txt(&["v=STSv10; id=x"])),
            Err(ParseError::NoRecord)
        );
        assert_eq!(
            record_id(&txt(&["v=STSv1; id=a", "v=STSv1; id=b"])),
            Err(ParseError::ManyRecords(2))
        );
        assert_eq!(
            record_id(&txt(&["v=STSv1; id=no-dash"])),
            Err(ParseError::NoId)
        );
        assert_eq!(record_id(&txt(&["v=STSv1;"])), Err(ParseError::NoId));
    }

    #[test]
    fn a_policy_parses_with_crlf_or_lf_and_unknown_keys() {
        let p = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET\r\n\
             max_age: 604800\r\nextension: x\r\n",
        )
        .expect("valid");
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(p.max_age, 604_800);
        let p = Policy::parse("version: STSv1\nmode: none\nmax_age: 999999999\n").expect("none");
        assert_eq!((p.mode, p.max_age), (Mode::None, MAX_AGE_LIMIT));
    }

    #[test]
    fn invalid_policies_say_why() {
        for (text, why) in [
            ("mode: enforce\nmx: a\nmax_age: 1\n", "version"),
            ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n", "mode"),
            ("version: STSv1\nmode: testing\nmax_age: 1\n", "no mx"),
            ("version: STSv1\nmode: testing\nmx: a\n", "max_age"),
            (
                "version: STSv1\nmode: testing\nmx: a\nmax_age: soon\n",
                "max_age",
            ),
            ("<html>not a policy</html>", "key: value"),
        ] {
            let e = Policy::parse(text).expect_err(text).to_string();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn wildcards_stand_for_exactly_one_leftmost_label() {
        let p = Policy {
            mode: Mode::Enforce,
            mx: vec!["mail.example.com".into(), "*.example.net".into()],
            max_age: 1,
        };
        assert!(p.matches("mail.example.com"));
        assert!(p.matches("MAIL.example.com."));
        assert!(p.matches("mx1.example.net"));
        assert!(!p.matches("a.mx1.example.net"));
        assert!(!p.matches("example.net"));
        assert!(!p.matches("other.example.com"));
    }
}
