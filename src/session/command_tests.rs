//! Unit tests for the command parser and line splitter (kept beside `command.rs` so that file
//! stays under the size cap). Replies are compared by constant, never by literal.

use super::*;

fn mail(line: &str) -> MailFrom {
    match parse(line.as_bytes()) {
        Ok(Command::Mail(m)) => m,
        other => panic!("{line:?}: {other:?}"),
    }
}

fn rcpt(line: &str) -> Result<Address, CommandError> {
    match parse(line.as_bytes()) {
        Ok(Command::Rcpt(r)) => Ok(r.to),
        Ok(other) => panic!("{line:?}: {other:?}"),
        Err(e) => Err(e),
    }
}

#[test]
fn verbs_are_case_insensitive_and_line_ends_are_optional() {
    for line in [
        "quit",
        "QUIT\r\n",
        "Quit\n",
        "rSeT",
        "noop hello",
        "DATA\r\n",
        "StartTLS",
    ] {
        assert!(parse(line.as_bytes()).is_ok(), "{line:?}");
    }
    assert_eq!(
        parse(b"ehlo Client.Test\r\n"),
        Ok(Command::Ehlo("Client.Test".into()))
    );
    assert_eq!(
        parse(b"HELO [192.0.2.1]"),
        Ok(Command::Helo("[192.0.2.1]".into()))
    );
    assert_eq!(parse(b"VRFY postmaster"), Ok(Command::Vrfy));
    assert_eq!(parse(b"HELP"), Ok(Command::Help));
}

#[test]
fn helo_without_a_name_or_with_controls_is_refused() {
    assert_eq!(parse(b"EHLO"), Err(CommandError::BadHelo));
    assert_eq!(parse(b"EHLO   \r\n"), Err(CommandError::BadHelo));
    assert_eq!(parse(b"EHLO a\rb\r\n"), Err(CommandError::Unrecognized));
    assert_eq!(parse(b"EHLO a\0b"), Err(CommandError::Unrecognized));
}

#[test]
fn unknown_and_unimplemented_verbs_have_distinct_replies() {
    assert_eq!(parse(b"FOO bar"), Err(CommandError::Unrecognized));
    assert_eq!(parse(b""), Err(CommandError::Unrecognized));
    assert_eq!(parse(b"EXPN staff"), Err(CommandError::NotImplemented));
    assert_eq!(parse(b"GET / HTTP/1.1"), Err(CommandError::Unrecognized));
    assert_eq!(parse(b"\xff\xfe"), Err(CommandError::Unrecognized));
    assert_eq!(CommandError::NotImplemented.reply(), reply::NOT_IMPLEMENTED);
}

#[test]
fn commands_without_arguments_refuse_arguments() {
    for line in ["DATA x", "RSET x", "QUIT now", "STARTTLS x", "VRFY"] {
        assert_eq!(parse(line.as_bytes()), Err(CommandError::Syntax), "{line}");
    }
}

#[test]
fn null_sender_is_accepted() {
    assert_eq!(mail("MAIL FROM:<>").from, ReversePath::Null);
    assert_eq!(mail("mail from:<> SIZE=100").size, Some(100));
}

#[test]
fn mail_parameters_parse() {
    let m =
        mail("MAIL FROM:<a@b.test> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+2B1 AUTH=<>");
    assert_eq!(m.size, Some(1000));
    assert_eq!(m.body, BodyType::EightBitMime);
    assert!(m.smtputf8);
    assert_eq!(m.ret.as_deref(), Some("HDRS"));
    assert_eq!(m.envid.as_deref(), Some("x+2B1"));
    assert_eq!(
        mail("MAIL FROM:<a@b.test> body=binarymime").body,
        BodyType::BinaryMime
    );
    assert_eq!(
        mail("MAIL FROM:<a@b.test> BODY=7BIT").body,
        BodyType::SevenBit
    );
    assert_eq!(mail("MAIL FROM: <a@b.test>").from.to_string(), "a@b.test");
    assert_eq!(
        mail("MAIL FROM:<a@b.test> SIZE=99999999999999999999").size,
        Some(u64::MAX)
    );
}

#[test]
fn requiretls_is_a_bare_keyword_given_once() {
    assert!(mail("MAIL FROM:<a@b.test> requiretls").requiretls);
    assert!(!mail("MAIL FROM:<a@b.test>").requiretls);
    for bad in [
        "MAIL FROM:<a@b.test> REQUIRETLS=YES",
        "MAIL FROM:<a@b.test> REQUIRETLS REQUIRETLS",
    ] {
        assert_eq!(parse(bad.as_bytes()), Err(CommandError::Syntax), "{bad}");
    }
}

#[test]
fn bad_mail_parameters_are_syntax_or_unknown() {
    let cases = [
        ("MAIL FROM:<a@b.test> SIZE=abc", CommandError::Syntax),
        ("MAIL FROM:<a@b.test> SIZE=1 SIZE=2", CommandError::Syntax),
        ("MAIL FROM:<a@b.test> BODY=9BIT", CommandError::Syntax),
        ("MAIL FROM:<a@b.test> SMTPUTF8=yes", CommandError::Syntax),
        (
            "MAIL FROM:<a@b.test> XFOO=1",
            CommandError::UnknownParameter,
        ),
        (
            "MAIL FROM:<a@b.test> NOTIFY=NEVER",
            CommandError::UnknownParameter,
        ),
        ("MAIL FROM:<a@b.test> =1", CommandError::Syntax),
        ("MAIL FROM:<a@b.test>SIZE=1", CommandError::BadAddress),
        ("MAIL FROM:a@b.test", CommandError::BadAddress),
        ("MAIL FROM:<a@b.test", CommandError::BadAddress),
        ("MAIL TO:<a@b.test>", CommandError::Syntax),
        ("MAIL", CommandError::Syntax),
        ("MAIL FROM:<\"a b\"@b.test>", CommandError::BadSender),
        ("MAIL FROM:<a%c@b.test>", CommandError::BadSender),
        ("MAIL FROM:<a@b@c.test>", CommandError::BadAddress),
        ("MAIL FROM:<@b.test>", CommandError::BadAddress),
        ("MAIL FROM:<a@[1.2.3]>", CommandError::BadAddress),
        ("MAIL FROM:<a\x7f@b.test>", CommandError::BadAddress),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line.as_bytes()), Err(want), "{line}");
    }
    assert_eq!(
        CommandError::UnknownParameter.reply(),
        reply::PARAM_NOT_IMPLEMENTED
    );
}

#[test]
fn sender_source_route_is_ignored() {
    assert_eq!(
        mail("MAIL FROM:<@relay.test,@r2.test:a@b.test>")
            .from
            .to_string(),
        "a@b.test"
    );
}

#[test]
fn rcpt_domains_are_normalised() {
    let a = rcpt("RCPT TO:<Sales@EXAMPLE.Test.>").expect("valid");
    assert_eq!(
        (a.local.as_str(), a.domain.as_str()),
        ("Sales", "example.test")
    );
    let a =
        rcpt("rcpt to:<sales@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;sales@example.test");
    assert!(a.is_ok());
}

#[test]
fn rcpt_relaying_tricks_are_relay_denied() {
    for line in [
        "RCPT TO:<@example.test:user@elsewhere.test>",
        "RCPT TO:<@example.test,@b.test:user@example.test>",
        "RCPT TO:<user%elsewhere.test@example.test>",
        "RCPT TO:<elsewhere.test!user@example.test>",
        "RCPT TO:<\"user@elsewhere.test\"@example.test>",
        "RCPT TO:<\"user\"@example.test>",
        "RCPT TO:<user@[127.0.0.1]>",
        "RCPT TO:<user@[IPv6:::1]>",
    ] {
        assert_eq!(rcpt(line), Err(CommandError::RelayAttempt), "{line}");
    }
    assert_eq!(CommandError::RelayAttempt.reply(), reply::RELAY_DENIED);
}

#[test]
fn bad_rcpt_syntax_is_refused() {
    for (line, want) in [
        ("RCPT TO:<>", CommandError::BadAddress),
        ("RCPT TO:<postmaster>", CommandError::BadAddress),
        ("RCPT TO:<a..b@example.test>", CommandError::BadAddress),
        ("RCPT TO:user@example.test", CommandError::BadAddress),
        ("RCPT TO:<@bad:>", CommandError::BadAddress),
        ("RCPT TO:<@:user@example.test>", CommandError::BadAddress),
        ("RCPT TO:<a@b@example.test>", CommandError::BadAddress),
        ("RCPT TO:<@example.test>", CommandError::BadAddress),
        ("RCPT TO:<a@>", CommandError::BadAddress),
        ("RCPT TO:<a@[127.0.0]>", CommandError::BadAddress),
        ("RCPT TO:<a@[127.0.0.1>", CommandError::BadAddress),
        ("RCPT TO:<<a@example.test>>", CommandError::BadAddress),
        ("RCPT TO:<a\x01b@example.test>", CommandError::BadAddress),
        ("RCPT TO:<a%b@c@example.test>", CommandError::BadAddress),
        (
            "RCPT TO:<a@example.test> NOTIFY=SOMETIMES",
            CommandError::Syntax,
        ),
        (
            "RCPT TO:<a@example.test> SIZE=1",
            CommandError::UnknownParameter,
        ),
        ("RCPT FROM:<a@example.test>", CommandError::Syntax),
    ] {
        assert_eq!(rcpt(line), Err(want), "{line}");
    }
}

#[test]
fn non_ascii_addresses_parse_for_the_smtputf8_check() {
    let a = rcpt("RCPT TO:<jösé@example.test>").expect("parses");
    assert_eq!(a.local, "jösé");
}

#[test]
fn bdat_sizes_and_last() {
    assert_eq!(
        parse(b"BDAT 0 LAST"),
        Ok(Command::Bdat {
            size: 0,
            last: true
        })
    );
    assert_eq!(
        parse(b"bdat 1024 last\r\n"),
        Ok(Command::Bdat {
            size: 1024,
            last: true
        })
    );
    assert_eq!(
        parse(b"BDAT 7"),
        Ok(Command::Bdat {
            size: 7,
            last: false
        })
    );
    for bad in [
        "BDAT",
        "BDAT -1",
        "BDAT x",
        "BDAT 1 FIRST",
        "BDAT 1 LAST x",
        "BDAT 99999999999999999999",
    ] {
        assert_eq!(parse(bad.as_bytes()), Err(CommandError::Syntax), "{bad}");
    }
}

#[test]
fn auth_takes_a_mechanism_and_optional_initial_response() {
    assert_eq!(
        parse(b"auth plain AGEAYg=="),
        Ok(Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some("AGEAYg==".into())
        })
    );
    assert_eq!(
        parse(b"AUTH LOGIN"),
        Ok(Command::Auth {
            mechanism: "LOGIN".into(),
            initial: None
        })
    );
    assert_eq!(parse(b"AUTH"), Err(CommandError::Syntax));
}

/// Feeds `input` to a reader in the pieces given and returns what came out.
fn split_lines(max: usize, pieces: &[&[u8]]) -> Vec<Result<Vec<u8>, ()>> {
    let mut r = LineReader::new(max);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match r.scan(&buf) {
                Scan::NeedMore { discard } => {
                    buf.drain(..discard);
                    break;
                }
                Scan::Line { len } => out.push(Ok(buf.drain(..len).collect())),
                Scan::TooLong { consumed } => {
                    buf.drain(..consumed);
                    out.push(Err(()));
                }
            }
        }
    }
    out
}

#[test]
fn lines_split_the_same_whole_bytewise_and_at_every_offset() {
    let input = b"EHLO a\r\nNOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nQUIT\nRSET\r\n";
    let whole = split_lines(16, &[input]);
    assert_eq!(
        whole,
        vec![
            Ok(b"EHLO a\r\n".to_vec()),
            Err(()),
            Ok(b"QUIT\n".to_vec()),
            Ok(b"RSET\r\n".to_vec())
        ]
    );
    let bytewise: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(split_lines(16, &bytewise), whole);
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(split_lines(16, &[a, b]), whole, "split at {i}");
    }
}

#[test]
fn a_line_of_exactly_max_bytes_is_accepted() {
    assert_eq!(
        split_lines(6, &[b"NOOP\r\n"]),
        vec![Ok(b"NOOP\r\n".to_vec())]
    );
    assert_eq!(split_lines(5, &[b"NOOP\r\n"]), vec![Err(())]);
}

#[test]
fn parse_never_panics_on_hostile_bytes() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 40) as usize;
        let alphabet = b"MAIL FROM:<>@%!\"\\.,;=RCPT TO BDAT\x00\r\n\xc3\xa9 SIZE=9[]";
        let line: Vec<u8> = (0..len)
            .map(|i| alphabet[((seed >> (i % 50)) as usize + i) % alphabet.len()])
            .collect();
        let _ = parse(&line);
    }
}
