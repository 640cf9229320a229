//! `[[domains]]`, `[[aliases]]`, `[routes.NAME]`: the inbound alias table (SPEC "Inbound routing").

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::endpoints::{CaFile, HttpsTrust};
use super::types::{HumanDuration, Secret};
use super::values::Parsed;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    pub name: String,
    /// Route for local parts that match nothing else; none = 550 5.1.1.
    #[serde(default)]
    pub catchall: Option<String>,
    #[serde(default = "default_bounce_alias")]
    pub bounce_alias: String,
    #[serde(default = "default_reply_alias")]
    pub reply_alias: String,
    /// Route that receives `reply+TOKEN@` mail (the ERP's thread replies).
    #[serde(default)]
    pub reply_route: Option<String>,
    #[serde(default = "yes")]
    pub dmarc_enforce: bool,
    /// Refuse mail whose MAIL FROM SPF result is `fail` (the sender published `-all` and
    /// this client is not listed) with 550 5.7.23. Off by default: forwarders break SPF,
    /// and DMARC already covers domains that ask for enforcement.
    #[serde(default)]
    pub spf_reject: bool,
    /// What a DNS temperror does when it decides the outcome (DMARC with enforcement,
    /// SPF with `spf_reject`): `tempfail` (451 4.7.5, default) or `accept`.
    #[serde(default)]
    pub auth_temperror: super::auth::TempErrorAction,
    /// What rspamd's verdict does for mail to this domain (`[spam]`); no effect while
    /// `spam.rspamd_url` is empty.
    #[serde(default)]
    pub spam: super::spam::SpamMode,
    /// What inbound auto-replies (out of office, vacation, `Auto-Submitted`) to this domain's
    /// ERP routes become: `tag` them with `X-Mxgate-Auto-Reply: yes` (default), `deliver` them
    /// untouched or `drop` them — so an out-of-office never turns into a CRM lead.
    #[serde(default)]
    pub auto_replies: AutoReplies,
    /// When relayed mail whose envelope sender is on this domain (Odoo's
    /// `bounce+<id>-<model>-<res_id>@`) bounces, deliver the bounce to that sender through
    /// the domain's routes, so the ERP counts it (issue 15 item 3).
    #[serde(default = "yes")]
    pub bounce_feedback: bool,
}

/// `[[domains]] auto_replies`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoReplies {
    Deliver,
    #[default]
    Tag,
    Drop,
}

impl AutoReplies {
    /// `reason` label of `mxgate_inbound_messages_total{result="auto_reply"}`.
    pub fn as_label(self) -> &'static str {
        match self {
            AutoReplies::Deliver => "deliver",
            AutoReplies::Tag => "tag",
            AutoReplies::Drop => "drop",
        }
    }
}

fn default_bounce_alias() -> String {
    "bounce".into()
}
fn default_reply_alias() -> String {
    "reply".into()
}
fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// `local@domain`; the domain must be one of `[[domains]]`.
    pub address: String,
    pub route: String,
}

pub type Routes = BTreeMap<String, RouteConfig>;

/// A route: where mail for an alias goes. A closed set, matched in `delivery`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RouteConfig {
    /// POST the raw message to the ERP.
    Http(HttpRoute),
    /// XML-RPC `message_process`, as Odoo's mailgate does (delivered by the relay issue).
    Odoo(OdooRoute),
    /// Re-send to these addresses with SRS (delivered by the relay issue).
    Forward(ForwardRoute),
    /// Write into a Maildir (`tmp/` then `new/`).
    Maildir(MaildirRoute),
    /// Accept and drop.
    Discard,
    /// Refuse at RCPT.
    Reject(RejectRoute),
}

impl RouteConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            RouteConfig::Http(_) => "http",
            RouteConfig::Odoo(_) => "odoo",
            RouteConfig::Forward(_) => "forward",
            RouteConfig::Maildir(_) => "maildir",
            RouteConfig::Discard => "discard",
            RouteConfig::Reject(_) => "reject",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    pub url: super::Parsed<super::HttpUrl>,
    /// Whole-request deadline; past it the attempt counts as failed and is retried.
    #[serde(default = "default_http_timeout")]
    pub timeout: HumanDuration,
    /// Sent as `Authorization: Bearer ...` when set.
    #[serde(default)]
    pub token: Secret,
    /// PEM file of a private CA the `https://` server's certificate may chain to (besides
    /// the webpki and system roots).
    #[serde(default)]
    pub ca_file: Option<super::Parsed<super::CaFile>>,
    /// `false` accepts any certificate (self-signed test ERPs); a warning at every start.
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// Adds `X-Mxgate-Signature` (HMAC-SHA256 of the body) to every request when set.
    #[serde(default)]
    pub signing_secret: Secret,
}

fn default_http_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdooRoute {
    /// Base URL of the Odoo server (`http://127.0.0.1:8069`); mxgate calls
    /// `/xmlrpc/2/object` (and `/xmlrpc/2/common` to log in) under it.
    pub url: super::Parsed<super::OdooUrl>,
    pub database: String,
    /// User id for `execute_kw`; give it, or `user` to look it up (`authenticate`) once.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Login whose uid is found by `/xmlrpc/2/common` `authenticate` (when `uid` is unset).
    #[serde(default)]
    pub user: String,
    /// Password or API key of that user.
    pub password: Secret,
    /// Model for new threads (`crm.lead`, `helpdesk.ticket`); empty lets Odoo decide by alias.
    #[serde(default)]
    pub model: String,
    #[serde(default = "default_http_timeout")]
    pub timeout: HumanDuration,
    /// PEM file of a private CA the `https://` server's certificate may chain to (besides
    /// the webpki and system roots).
    #[serde(default)]
    pub ca_file: Option<super::Parsed<super::CaFile>>,
    /// `false` accepts any certificate (self-signed test ERPs); a warning at every start.
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// Adds `X-Mxgate-Signature` (HMAC-SHA256 of the body) to every request when set.
    #[serde(default)]
    pub signing_secret: Secret,
    /// As a domain's catchall, take only local parts that are aliases in Odoo's `mail.alias`
    /// (read at start and every `alias_refresh`); others get 550 5.1.1.
    #[serde(default)]
    pub validate_aliases: bool,
    #[serde(default = "default_alias_refresh")]
    pub alias_refresh: HumanDuration,
}

fn default_alias_refresh() -> HumanDuration {
    HumanDuration::secs(300)
}

impl HttpRoute {
    pub fn trust(&self) -> HttpsTrust<'_> {
        trust(self.ca_file.as_ref(), self.tls_verify)
    }
}

impl OdooRoute {
    pub fn trust(&self) -> HttpsTrust<'_> {
        trust(self.ca_file.as_ref(), self.tls_verify)
    }
}

/// The trust of an endpoint from its `ca_file` and `tls_verify` keys.
pub(super) fn trust(ca_file: Option<&Parsed<CaFile>>, tls_verify: bool) -> HttpsTrust<'_> {
    HttpsTrust {
        ca_file: ca_file.and_then(Parsed::get),
        insecure: !tls_verify,
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRoute {
    pub to: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaildirRoute {
    pub path: PathBuf,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectRoute {
    /// Text after `550 5.7.1`; default "Recipient rejected".
    #[serde(default)]
    pub message: Option<String>,
}
