//! One attempt for one recipient: its route's kind picks the transport. Input: the stored
//! message, the recipient and the raw body; output: an [`Outcome`] (never an error — every
//! failure is classified).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::outcome::classify;
use super::relay::Relay;
use super::{Error, http, maildir, odoo};
use crate::config::{Config, RouteConfig};
use crate::envelope::Destination;
use crate::queue::Outcome;
use crate::queue::transition::STORED_FOR_BOUNCE;
use crate::queue::{QueuedMessage, Recipient};

/// What an attempt needs, all built from one config: the server builds one per config (at
/// start and on every reload) and each attempt takes the current one for its whole run.
pub struct Context {
    pub config: Arc<Config>,
    pub http: http::Client,
    /// uids of `odoo` routes configured with a login.
    pub odoo: odoo::Logins,
    /// Outbound relay (relayed recipients, `forward` routes, DSNs); `None` = defer them.
    pub relay: Option<Arc<Relay>>,
    /// Metrics, statistics and ERP events of each recorded outcome; `None` = metrics only.
    pub observer: Option<crate::report::Observer>,
    /// Warming tiers and provider rates of relayed mail; `None` = `[warming]` is off.
    pub warming: Option<super::warming::Warming>,
}

impl Context {
    pub fn new(
        config: Arc<Config>,
        relay: Option<Arc<Relay>>,
        observer: Option<crate::report::Observer>,
        warming: Option<super::warming::Warming>,
    ) -> Context {
        Context {
            config,
            http: http::client(),
            odoo: odoo::Logins::default(),
            relay,
            observer,
            warming,
        }
    }

    /// `provider` label of the delivery metrics: the recipient's provider for relayed mail,
    /// else the route kind (`http`, `odoo`, `maildir`, ...).
    pub fn kind_label(&self, rcpt: &Recipient) -> &'static str {
        match &rcpt.dest {
            Destination::Bounce { .. } => "bounce",
            // Relayed mail: the mailbox provider (gmail, microsoft, ..., other), as SPEC's
            // `mxgate_delivery_attempts_total{result,provider}` means it; bounded set.
            Destination::Relay => {
                crate::providers::detect_provider(Some(&rcpt.address), &[], "").as_label()
            }
            Destination::SrsReturn { .. } => "relay",
            Destination::Route { route, .. } => self
                .config
                .route(route)
                .map_or("unknown", RouteConfig::kind),
        }
    }
}

/// Runs one attempt and classifies its result.
pub async fn run(ctx: &Context, msg: &QueuedMessage, rcpt: &Recipient, body: Vec<u8>) -> Outcome {
    run_from(ctx, msg, rcpt, body).await.0
}

/// As [`run`], with the local IP a relayed message left from (`sending_ip`), when it did.
pub async fn run_from(
    ctx: &Context,
    msg: &QueuedMessage,
    rcpt: &Recipient,
    body: Vec<u8>,
) -> (Outcome, Option<IpAddr>) {
    let result = match (&rcpt.dest, &ctx.relay) {
        (Destination::Relay, Some(relay)) => {
            // Recipients are unique per message (RCPT de-duplicates), so the address
            // finds the index the VERP token names.
            let idx = msg
                .recipients
                .iter()
                .position(|r| r.address == rcpt.address)
                .and_then(|i| u16::try_from(i).ok())
                .unwrap_or(0);
            relay.deliver_from(msg, idx, &rcpt.address, &body).await
        }
        _ => (deliver(ctx, msg, rcpt, body).await, None),
    };
    match result {
        (Ok(reply), ip) => (Outcome::Sent { reply }, ip),
        (Err(e), ip) => (classify(&e), ip),
    }
}

async fn deliver(
    ctx: &Context,
    msg: &QueuedMessage,
    rcpt: &Recipient,
    body: Vec<u8>,
) -> Result<String, Error> {
    let (route, alias, thread, detail) = match &rcpt.dest {
        Destination::Route {
            route,
            alias,
            thread,
            detail,
        } => (route, alias, thread, detail),
        // Stored for the bounce stage at enqueue; never delivered anywhere.
        Destination::Bounce { .. } => return Ok(STORED_FOR_BOUNCE.to_string()),
        Destination::Relay => {
            let relay = ctx.relay.as_ref().ok_or(Error::NoRelay)?;
            // Recipients are unique per message (RCPT de-duplicates), so the address
            // finds the index the VERP token names.
            let idx = msg
                .recipients
                .iter()
                .position(|r| r.address == rcpt.address)
                .and_then(|i| u16::try_from(i).ok())
                .unwrap_or(0);
            return relay.deliver(msg, idx, &rcpt.address, &body).await;
        }
        Destination::SrsReturn { to } => {
            let relay = ctx.relay.as_ref().ok_or(Error::NoRelay)?;
            return relay.deliver(msg, 0, to, &body).await;
        }
    };
    let Some(cfg) = ctx.config.route(route) else {
        return Err(Error::UnknownRoute(route.clone()));
    };
    match cfg {
        RouteConfig::Http(h) => {
            let meta = http::Metadata {
                route,
                alias,
                thread: thread.as_deref(),
                detail: detail.as_deref(),
                envelope_from: &msg.mail_from,
                envelope_to: &rcpt.address,
                queue_id: msg.id.to_string(),
            };
            http::post(&ctx.http, h, &meta, body).await
        }
        RouteConfig::Maildir(m) => {
            deliver_maildir(m.path.clone(), ctx.config.server.hostname.clone(), body).await
        }
        RouteConfig::Discard => Ok("discarded".to_string()),
        // Refused at RCPT; only reachable if the config changed while the message waited.
        RouteConfig::Reject(r) => Err(Error::Rejected(
            r.message
                .clone()
                .unwrap_or_else(|| "route rejects mail".to_string()),
        )),
        RouteConfig::Forward(f) => {
            let relay = ctx.relay.as_ref().ok_or(Error::NoRelay)?;
            relay.forward(msg, &f.to, &body).await
        }
        RouteConfig::Odoo(o) => odoo::deliver(&ctx.http, &ctx.odoo, route, o, &body).await,
    }
}

async fn deliver_maildir(dir: PathBuf, hostname: String, body: Vec<u8>) -> Result<String, Error> {
    let path = tokio::task::spawn_blocking(move || maildir::deliver(&dir, &hostname, &body))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(format!("maildir new/{name}"))
}
