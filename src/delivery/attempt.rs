//! One attempt for one recipient: its route's kind picks the transport. Input: the stored
//! message, the recipient and the raw body; output: an [`Outcome`] (never an error — every
//! failure is classified).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::outcome::classify;
use super::{Error, Outcome, http, maildir};
use crate::config::{Config, RouteConfig};
use crate::queue::transition::STORED_FOR_BOUNCE;
use crate::queue::{QueuedMessage, Recipient};
use crate::routing::Destination;

/// What every attempt needs, built once by the worker.
pub struct Context {
    pub config: Arc<Config>,
    pub http: http::Client,
    /// Route kinds already warned about as not available yet: one warning, not one per retry.
    warned: Mutex<HashSet<&'static str>>,
}

impl Context {
    pub fn new(config: Arc<Config>) -> Context {
        Context {
            config,
            http: http::client(),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// `provider` label of the delivery metrics: the route kind.
    pub fn kind_label(&self, rcpt: &Recipient) -> &'static str {
        match &rcpt.dest {
            Destination::Bounce { .. } => "bounce",
            Destination::Route { route, .. } => self
                .config
                .route(route)
                .map_or("unknown", RouteConfig::kind),
        }
    }

    fn warn_once(&self, kind: &'static str, route: &str) {
        let first = self
            .warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind);
        if first {
            tracing::warn!(
                route,
                kind,
                "route kind not available yet: its mail stays queued (deferred) until it is"
            );
        }
    }
}

/// Runs one attempt and classifies its result.
pub async fn run(ctx: &Context, msg: &QueuedMessage, rcpt: &Recipient, body: Vec<u8>) -> Outcome {
    match deliver(ctx, msg, rcpt, body).await {
        Ok(reply) => Outcome::Sent { reply },
        Err(e) => classify(&e),
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
        RouteConfig::Odoo(_) | RouteConfig::Forward(_) => {
            ctx.warn_once(cfg.kind(), route);
            Err(Error::NotAvailable(cfg.kind()))
        }
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
