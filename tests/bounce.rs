//! Bounce stage (⑥) integration tests: the DSN fixtures we wrote ourselves (one per MTA
//! format in `tests/fixtures/dsn/`), `classify_reply` on the replies our own delivery gets,
//! the fuzz corpus replayed through the parser, and `mxgate classify` run as a process.

use std::path::{Path, PathBuf};
use std::process::Command;

use mxgate::bounce::{self, Category, DeliveryKind, ReportKind};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dsn")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).expect("fixture exists")
}

/// (file, kind, category of the first failed recipient, status, reply code, provider, hard)
type Row = (
    &'static str,
    ReportKind,
    Option<Category>,
    Option<&'static str>,
    Option<u16>,
    &'static str,
    bool,
);

#[rustfmt::skip]
const FIXTURES: &[Row] = &[
    ("postfix.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.1.1"), Some(550), "other", true),
    ("sendmail.eml", ReportKind::Bounce, Some(Category::MailboxFull), Some("5.2.2"), Some(552), "other", false),
    ("sendmail_v5.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, Some(550), "other", true),
    ("exim.eml", ReportKind::Bounce, Some(Category::Dmarc), Some("5.7.26"), Some(550), "google_workspace", false),
    ("qmail.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.1.1"), Some(550), "other", true),
    ("gmail.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.1.1"), Some(550), "gmail", true),
    ("gmail_legacy.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, None, "other", true),
    ("gmail_rate.eml", ReportKind::Bounce, Some(Category::RateLimit), Some("4.2.1"), Some(450), "gmail", false),
    ("m365.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.4.1"), Some(550), "microsoft", true),
    ("m365_blocked.eml", ReportKind::Bounce, Some(Category::Blocked), Some("5.7.1"), Some(550), "microsoft", false),
    ("yahoo.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, Some(554), "yahoo", true),
    ("aol.eml", ReportKind::Bounce, Some(Category::Blocked), Some("4.7.0"), Some(421), "aol", false),
    ("icloud.eml", ReportKind::Bounce, Some(Category::Blocked), Some("5.7.1"), Some(554), "icloud", false),
    ("ses.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.1.1"), Some(550), "other", true),
    ("ses_json.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.1.1"), Some(550), "other", true),
    ("sendgrid.eml", ReportKind::Bounce, Some(Category::Mailbox), Some("5.2.1"), Some(550), "other", false),
    ("domino.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, None, "other", true),
    ("mailmarshal.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.1.1"), Some(550), "other", true),
    ("opensmtpd.eml", ReportKind::Bounce, Some(Category::MailboxFull), Some("5.2.2"), Some(552), "other", false),
    ("courier.eml", ReportKind::Bounce, Some(Category::Blocked), Some("5.7.1"), Some(554), "other", false),
    ("expired.eml", ReportKind::Bounce, Some(Category::RecipientError), Some("4.4.1"), None, "other", false),
    ("toobig.eml", ReportKind::Bounce, Some(Category::Rejection), Some("5.3.4"), Some(552), "other", false),
    // Formats of further MTAs, appliances and carriers (written from their documented layouts).
    ("activehunter.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.1.1"), Some(550), "other", true),
    ("autoreply_de.eml", ReportKind::AutoReply, None, None, None, "other", false),
    ("barracuda.eml", ReportKind::Bounce, Some(Category::Blocked), None, None, "other", false),
    ("biglobe.eml", ReportKind::Bounce, Some(Category::MailboxFull), None, None, "other", false),
    ("gmx.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.1.1"), None, "other", true),
    ("human_reply.eml", ReportKind::NotBounce, None, None, None, "other", false),
    ("imail.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, None, "other", true),
    ("james.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, Some(550), "other", true),
    ("mailfoundry.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, Some(550), "other", true),
    ("mailru.eml", ReportKind::Bounce, Some(Category::MailboxFull), Some("5.2.2"), Some(550), "other", false),
    ("messagelabs.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.0.0"), Some(550), "other", true),
    ("mimecast.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, Some(550), "other", true),
    ("notes.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, None, "other", true),
    ("outlook_autoreply.eml", ReportKind::AutoReply, None, None, None, "other", false),
    ("postfix_delayed.eml", ReportKind::Bounce, Some(Category::RecipientError), Some("4.4.1"), None, "other", false),
    ("rbl_notice.eml", ReportKind::Bounce, Some(Category::Blocked), Some("5.7.1"), Some(554), "other", false),
    ("remote_said.eml", ReportKind::Bounce, Some(Category::MailboxFull), Some("5.2.2"), Some(552), "other", false),
    ("surfcontrol.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, Some(550), "other", true),
    ("trendmicro.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.1.1"), Some(550), "other", true),
    ("verizon.eml", ReportKind::Bounce, Some(Category::InvalidAddress), None, None, "other", true),
    ("workmail.eml", ReportKind::Bounce, Some(Category::RecipientError), Some("5.4.7"), Some(554), "other", false),
    ("exchange_de.eml", ReportKind::Bounce, Some(Category::InvalidAddress), Some("5.1.10"), Some(550), "other", true),
    ("mailbox_full_es.eml", ReportKind::Bounce, Some(Category::MailboxFull), None, None, "other", false),
    ("delivered.eml", ReportKind::DeliveryNotice, None, None, None, "other", false),
    ("arf.eml", ReportKind::Complaint, None, None, None, "other", false),
    ("autoreply.eml", ReportKind::AutoReply, None, None, None, "other", false),
    ("plain.eml", ReportKind::NotBounce, None, None, None, "other", false),
    ("cron_output.eml", ReportKind::NotBounce, None, None, None, "other", false),
    ("postmaster_welcome.eml", ReportKind::NotBounce, None, None, None, "other", false),
    ("garbage.eml", ReportKind::NotBounce, None, None, None, "other", false),
];

#[test]
fn every_fixture_is_parsed_and_classified_as_expected() {
    for (file, kind, category, status, reply, provider, hard) in FIXTURES {
        let r = bounce::parse(&fixture(file));
        assert_eq!(r.kind, *kind, "{file}: kind");
        assert_eq!(
            r.is_bounce,
            *kind == ReportKind::Bounce,
            "{file}: is_bounce"
        );
        assert_eq!(r.provider.as_label(), *provider, "{file}: provider");
        let first = r.first_failed();
        assert_eq!(
            first.and_then(|f| f.category),
            *category,
            "{file}: category"
        );
        if category.is_some() {
            let f = first.expect("a failed recipient");
            assert_eq!(f.status.as_deref(), *status, "{file}: status");
            assert_eq!(f.reply_code, *reply, "{file}: reply code");
            assert_eq!(f.hard, *hard, "{file}: hard");
            assert!(f.address.contains('@'), "{file}: address {:?}", f.address);
            assert!(!f.diagnostic.is_empty(), "{file}: diagnostic");
        }
    }
}

#[test]
fn every_category_has_a_fixture() {
    for c in Category::ALL {
        assert!(
            FIXTURES.iter().any(|row| row.2 == Some(*c)),
            "no fixture for {c}"
        );
    }
}

#[test]
fn dsn_fields_envid_and_original_message_are_reported() {
    let r = bounce::parse(&fixture("postfix.eml"));
    assert_eq!(r.envid.as_deref(), Some("ENV-postfix.eml"));
    assert_eq!(r.reporting_mta.as_deref(), Some("mx.sender.test"));
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("orig-postfix.eml@sender.test")
    );
    let rc = &r.recipients[0];
    assert_eq!(rc.action.as_deref(), Some("failed"));
    assert_eq!(rc.original_recipient.as_deref(), Some("nobody@example.net"));
    assert_eq!(rc.remote_mta.as_deref(), Some("mx.example.net"));
    assert_eq!(rc.kind, Some(DeliveryKind::Permanent));
}

#[test]
fn a_delayed_recipient_is_a_transient_bounce() {
    let r = bounce::parse(&fixture("gmail_rate.eml"));
    assert_eq!(r.recipients[0].kind, Some(DeliveryKind::Transient));
}

#[test]
fn feedback_reports_carry_type_and_complainant() {
    let r = bounce::parse(&fixture("arf.eml"));
    assert_eq!(r.feedback_type.as_deref(), Some("abuse"));
    assert_eq!(r.recipients[0].address, "grumpy@yahoo.com");
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("orig-arf@sender.test")
    );
}

#[test]
fn hostile_mime_is_bounded_and_does_not_panic() {
    let start = std::time::Instant::now();
    let r = bounce::parse(&fixture("hostile.eml"));
    assert!(
        r.recipients.len() <= 100,
        "{} recipients",
        r.recipients.len()
    );
    // Generous bound: debug build on a shared 2-core machine.
    assert!(start.elapsed().as_secs() < 10);
}

#[test]
fn truncated_fixtures_never_panic() {
    for (file, ..) in FIXTURES {
        let raw = fixture(file);
        let step = if raw.len() > 3000 { 13 } else { 1 };
        for end in (0..raw.len()).step_by(step) {
            let _ = bounce::parse(&raw[..end]);
        }
    }
}

/// (reply code, enhanced status, text) → (category, hard, kind).
type ReplyCase<'a> = (
    Option<u16>,
    Option<&'a str>,
    &'a str,
    Category,
    bool,
    DeliveryKind,
);

#[test]
#[rustfmt::skip]
fn classify_reply_files_our_own_delivery_replies() {
    let cases: &[ReplyCase] = &[
        (Some(550), Some("5.1.1"), "<x@y>: Recipient address rejected: User unknown", Category::InvalidAddress, true, DeliveryKind::Permanent),
        (Some(550), None, "5.1.1 The email account that you tried to reach does not exist. - gsmtp", Category::InvalidAddress, true, DeliveryKind::Permanent),
        (Some(452), Some("4.2.2"), "The email account that you tried to reach is over quota.", Category::MailboxFull, false, DeliveryKind::Transient),
        (Some(550), Some("5.7.26"), "This mail has been blocked because the sender is unauthenticated.", Category::Dmarc, false, DeliveryKind::Permanent),
        (Some(554), Some("5.7.1"), "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", Category::Blocked, false, DeliveryKind::Permanent),
        (Some(421), Some("4.7.28"), "Our system has detected an unusual rate of mail originating from your IP address; temporarily rate limited", Category::RateLimit, false, DeliveryKind::Transient),
        (Some(550), Some("5.2.1"), "The email account that you tried to reach is disabled.", Category::Mailbox, false, DeliveryKind::Permanent),
        (Some(553), Some("5.1.8"), "<s@x>: Sender address rejected: Domain not found", Category::Rejection, false, DeliveryKind::Permanent),
        (Some(552), Some("5.3.4"), "Message size exceeds fixed maximum message size", Category::Rejection, false, DeliveryKind::Permanent),
        (Some(451), Some("4.4.1"), "connect to mx.example[192.0.2.9]:25: Connection timed out", Category::RecipientError, false, DeliveryKind::Transient),
        (Some(550), Some("5.7.606"), "Access denied, banned sending IP [192.0.2.4]", Category::Blocked, false, DeliveryKind::Permanent),
        (Some(550), Some("5.7.509"), "Access denied, sending domain example.com does not pass DMARC verification", Category::Dmarc, false, DeliveryKind::Permanent),
    ];
    for (code, status, text, cat, hard, kind) in cases {
        let c = bounce::classify_reply(*code, *status, text);
        assert_eq!(c.category, *cat, "{text}");
        assert_eq!(c.hard, *hard, "{text}");
        assert_eq!(c.kind, *kind, "{text}");
    }
}

#[test]
fn detect_provider_is_usable_from_delivery() {
    use mxgate::providers::{Provider, detect_provider};
    assert_eq!(
        detect_provider(
            Some("a@corp.example"),
            &["corp-example.mail.protection.outlook.com"],
            ""
        ),
        Provider::Microsoft
    );
    assert_eq!(
        detect_provider(Some("a@yahoo.com"), &[], ""),
        Provider::Yahoo
    );
    assert_eq!(
        detect_provider(None, &["mx.unknown.example"], "550 no"),
        Provider::Other
    );
}

#[test]
fn fuzz_corpus_replays_through_the_parser() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/bounce_parse");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("no fuzz corpus at {}", dir.display());
        return;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let raw = std::fs::read(e.path()).expect("corpus file readable");
        let r = bounce::parse(&raw);
        assert!(r.is_bounce == (r.kind == ReportKind::Bounce));
        n += 1;
    }
    assert!(n > 0, "fuzz corpus directory is empty");
}

#[test]
fn classify_cli_prints_one_json_line_per_file_and_fails_on_unreadable_ones() {
    let dir = fixture_dir();
    let missing = dir.join("does-not-exist.eml");
    let out = Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .arg("classify")
        .arg("--json")
        .arg(dir.join("postfix.eml"))
        .arg(&missing)
        .arg(dir.join("autoreply.eml"))
        .output()
        .expect("run mxgate classify");
    assert!(
        !out.status.success(),
        "an unreadable file makes the command fail"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does-not-exist.eml"),
        "stderr names the file: {stderr}"
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let b = &lines[0];
    assert!(
        b["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("postfix.eml"))
    );
    assert_eq!(b["is_bounce"], true);
    assert_eq!(b["category"], "Invalid address");
    assert_eq!(b["status"], "5.1.1");
    assert_eq!(b["reply_code"], "550");
    assert_eq!(b["provider"], "other");
    assert_eq!(b["hard"], true);
    let r = &b["recipients"][0];
    for key in [
        "address",
        "status",
        "reply_code",
        "category",
        "hard",
        "diagnostic",
    ] {
        assert!(r.get(key).is_some(), "recipient has {key}");
    }
    assert_eq!(r["address"], "nobody@example.net");
    let a = &lines[1];
    assert_eq!(a["is_bounce"], false);
    assert!(a["category"].is_null());
}

#[test]
fn classify_cli_table_has_one_line_per_file() {
    let dir = fixture_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .args(["classify"])
        .arg(dir.join("qmail.eml"))
        .arg(dir.join("arf.eml"))
        .output()
        .expect("run mxgate classify");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains("Invalid address") && lines[0].contains("5.1.1"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("complaint"), "{}", lines[1]);
}
