//! Unit tests for the XML-RPC calls `odoo` routes make and the answers they read.

use super::*;
use crate::config::{HumanDuration, Parsed, Secret};

fn route(model: &str) -> OdooRoute {
    OdooRoute {
        url: Parsed::new("http://127.0.0.1:8069"),
        database: "prod<1>".into(),
        uid: Some(2),
        user: String::new(),
        password: Secret::new("s3cret"),
        model: model.into(),
        timeout: HumanDuration::secs(5),
        ca_file: None,
        tls_verify: true,
        signing_secret: Secret::default(),
        validate_aliases: false,
        alias_refresh: HumanDuration::secs(300),
    }
}

#[test]
fn execute_kw_carries_db_uid_password_model_and_base64_message() {
    let body = execute_kw_call(&route("crm.lead"), 2, b"Subject: x\r\n\r\n\xff");
    assert!(body.contains("<methodName>execute_kw</methodName>"));
    assert!(body.contains("<string>prod&lt;1&gt;</string>"));
    assert!(body.contains("<int>2</int>"));
    assert!(body.contains("<string>mail.thread</string>"));
    assert!(body.contains("<string>message_process</string>"));
    assert!(body.contains("<string>crm.lead</string>"));
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"Subject: x\r\n\r\n\xff");
    assert!(body.contains(&format!("<base64>{b64}</base64>")));
    let no_model = execute_kw_call(&route(""), 2, b"x");
    assert!(no_model.contains("<boolean>0</boolean>"));
}

#[test]
fn responses_decode_to_values_or_faults() {
    let ok = "<?xml version='1.0'?><methodResponse><params><param><value><int>42</int></value></param></params></methodResponse>";
    assert_eq!(parse_response(ok).expect("ok"), Value::Int(42));
    let fault = "<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>1</int></value></member><member><name>faultString</name><value><string>No possible route &amp; no model</string></value></member></struct></value></fault></methodResponse>";
    match parse_response(fault) {
        Err(Error::Fault(s)) => assert!(s.contains("No possible route & no model"), "{s}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse_response("<html>502</html>"),
        Err(Error::Fault(_))
    ));
}

#[test]
fn endpoint_accepts_base_or_full_xmlrpc_urls() {
    let at = |url: &str| OdooRoute {
        url: Parsed::new(url),
        ..route("")
    };
    let e = endpoint(&at("http://erp.test:8069/"), Service::Object).expect("uri");
    assert_eq!(e.to_string(), "http://erp.test:8069/xmlrpc/2/object");
    let e = endpoint(&at("http://erp.test:8069/xmlrpc/2/object"), Service::Common).expect("uri");
    assert_eq!(e.to_string(), "http://erp.test:8069/xmlrpc/2/common");
    let e = endpoint(&at("https://erp.test"), Service::Object).expect("https");
    assert_eq!(e.to_string(), "https://erp.test/xmlrpc/2/object");
}
