//! Unit tests for the alias resolution ([`super::Router::resolve`]) and the bounce
//! feedback route ([`super::Router::feedback`]).

use super::*;
use std::path::Path;

fn router(catchall: bool) -> Router {
    let toml = format!(
        r#"
[[domains]]
name = "example.test"
{}
reply_route = "threads"
[[aliases]]
address = "Sales@example.test"
route = "crm"
[[aliases]]
address = "old@example.test"
route = "closed"
[routes.crm]
kind = "http"
url = "http://127.0.0.1:1/"
[routes.threads]
kind = "http"
url = "http://127.0.0.1:1/"
[routes.inbox]
kind = "discard"
[routes.closed]
kind = "reject"
message = "Gone"
"#,
        if catchall { "catchall = \"inbox\"" } else { "" }
    );
    Router::new(&Config::from_toml(&toml, Path::new("t")).unwrap_or_else(|e| panic!("{e}")))
}

fn addr(s: &str) -> Address {
    Address::parse(s).expect("valid test address")
}

fn route_of(d: Destination) -> (String, Option<String>, Option<String>) {
    match d {
        Destination::Route {
            route,
            thread,
            detail,
            ..
        } => (route, thread, detail),
        other => panic!("expected a route, got {other:?}"),
    }
}

#[test]
fn feedback_takes_the_erps_bounce_address_to_a_route_and_others_as_inbound_mail() {
    let r = router(true);
    let odoo = addr("bounce+42-crm.lead-7@example.test");
    assert_eq!(route_of(r.feedback(&odoo).expect("routed")).0, "inbox");
    assert_eq!(
        r.resolve(&odoo).ok(),
        Some(Destination::Bounce {
            token: "42-crm.lead-7".into()
        })
    );
    assert_eq!(
        route_of(r.feedback(&addr("bounce@example.test")).expect("ok")).0,
        "inbox"
    );
    let r = router(false);
    assert_eq!(route_of(r.feedback(&odoo).expect("routed")).0, "threads");
    assert_eq!(
        route_of(r.feedback(&addr("sales@example.test")).expect("ok")).0,
        "crm"
    );
    assert_eq!(r.feedback(&addr("nobody@example.test")), None);
    assert_eq!(
        r.feedback(&addr("old@example.test")),
        None,
        "a reject route"
    );
    assert_eq!(r.feedback(&addr("bounce+1@elsewhere.test")), None);
}

#[test]
fn exact_alias_matches_case_insensitively() {
    let r = router(false);
    assert_eq!(
        route_of(r.resolve(&addr("SALES@Example.Test")).expect("ok")).0,
        "crm"
    );
}

#[test]
fn reply_token_goes_to_thread_route_with_token_kept() {
    let (route, thread, _) = route_of(
        router(false)
            .resolve(&addr("reply+AbC123@example.test"))
            .expect("ok"),
    );
    assert_eq!(
        (route.as_str(), thread.as_deref()),
        ("threads", Some("AbC123"))
    );
}

#[test]
fn bounce_token_goes_to_bounce_processing() {
    let d = router(false)
        .resolve(&addr("bounce+TOK@example.test"))
        .expect("ok");
    assert_eq!(
        d,
        Destination::Bounce {
            token: "TOK".into()
        }
    );
}

#[test]
fn alias_detail_goes_to_alias_with_detail() {
    let (route, _, detail) = route_of(
        router(false)
            .resolve(&addr("sales+q3@example.test"))
            .expect("ok"),
    );
    assert_eq!((route.as_str(), detail.as_deref()), ("crm", Some("q3")));
}

#[test]
fn unknown_local_part_uses_catchall_or_is_unknown_user() {
    assert_eq!(
        route_of(router(true).resolve(&addr("who@example.test")).expect("ok")).0,
        "inbox"
    );
    assert_eq!(
        router(false).resolve(&addr("who@example.test")),
        Err(Error::UnknownUser)
    );
}

#[test]
fn other_domains_are_relay_denied() {
    let r = router(true);
    for a in [
        "sales@other.test",
        "sales@example.test.evil.test",
        "sales@sub.example.test",
    ] {
        assert_eq!(r.resolve(&addr(a)), Err(Error::RelayDenied), "{a}");
    }
}

#[test]
fn reject_route_refuses_with_its_message() {
    assert_eq!(
        router(true).resolve(&addr("old@example.test")),
        Err(Error::Rejected("Gone".into()))
    );
}
