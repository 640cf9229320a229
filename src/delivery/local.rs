//! The local lane: a recipient whose alias resolved to a route. The route kind — matched
//! here and nowhere else in delivery — picks the transport: `http` (POST to the ERP),
//! `odoo` (XML-RPC), `maildir`, `discard`, `reject`, `forward`.
//!
//! `forward` is local although its mail leaves over SMTP: the attempt itself only writes an
//! SRS copy into the queue ([`forward`](super::forward)); the copy's recipients are relayed
//! recipients of their own, and it is their attempts that warming, the plan and SMTP see.
//! So no relay-lane step (warming, plan, DSN to the sender) runs for an ERP delivery.

use std::path::PathBuf;

use super::attempt::{Attempt, body_missing};
use super::auto_reply::{self, Decision};
use super::outcome::classify;
use super::{Error, http, maildir, odoo};
use crate::config::RouteConfig;
use crate::envelope::Destination;
use crate::queue::Outcome;
use crate::queue::transition::STORED_FOR_BOUNCE;

/// One attempt for a `Route` recipient (or a stored `bounce+TOKEN` copy, which the queue
/// never schedules: it is `sent` from enqueue on), recorded without any DSN — the sender of
/// inbound mail is told by the SMTP reply, not by a DSN from the ERP side.
pub(super) async fn attempt(a: &Attempt<'_>, body: Option<Vec<u8>>) {
    let kind = match &a.rcpt.dest {
        Destination::Route { route, .. } => a
            .ctx
            .config
            .route(route)
            .map_or("unknown", RouteConfig::kind),
        _ => "bounce",
    };
    let outcome = match body {
        Some(body) => match deliver(a, body).await {
            Ok(reply) => Outcome::Sent { reply },
            Err(e) => classify(&e),
        },
        None => body_missing(),
    };
    a.finish(outcome, kind, None, |_, _| None).await;
}

async fn deliver(a: &Attempt<'_>, body: Vec<u8>) -> Result<String, Error> {
    let Destination::Route {
        route,
        alias,
        thread,
        detail,
    } = &a.rcpt.dest
    else {
        return Ok(STORED_FOR_BOUNCE.to_string());
    };
    let (ctx, msg) = (a.ctx, a.msg);
    let Some(cfg) = ctx.config.route(route) else {
        return Err(Error::UnknownRoute(route.clone()));
    };
    let body = match auto_replies(a, &body) {
        Decision::Deliver => body,
        Decision::Rewritten(rewritten) => rewritten,
        Decision::Drop => return Ok(AUTO_REPLY_DROPPED.to_string()),
    };
    match cfg {
        RouteConfig::Http(h) => {
            let meta = http::Metadata {
                route,
                alias,
                thread: thread.as_deref(),
                detail: detail.as_deref(),
                envelope_from: &msg.mail_from,
                envelope_to: &a.rcpt.address,
                queue_id: msg.id.to_string(),
            };
            http::post(ctx.http.route(route)?, h, &meta, body).await
        }
        RouteConfig::Odoo(o) => {
            odoo::deliver(ctx.http.route(route)?, &ctx.odoo, route, o, &body).await
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
            let forward = ctx.forward.as_ref().ok_or(Error::NoRelay)?;
            forward.forward(msg, &f.to, &body).await
        }
    }
}

/// `last_reply` of a recipient whose auto-reply was dropped (`auto_replies = "drop"`).
const AUTO_REPLY_DROPPED: &str = "auto-reply dropped (auto_replies = drop)";

/// The recipient domain's `auto_replies` applied to `body`. An auto-reply is counted once
/// per message: at the first attempt of its first ERP recipient.
fn auto_replies(a: &Attempt<'_>, body: &[u8]) -> Decision {
    let mode = a
        .ctx
        .config
        .domain_of(&a.rcpt.address)
        .map(|d| d.auto_replies)
        .unwrap_or_default();
    let auto = auto_reply::is_auto_reply(body);
    let first_erp_rcpt = a
        .msg
        .recipients
        .iter()
        .position(|r| matches!(r.dest, Destination::Route { .. }));
    if auto && a.rcpt.attempts == 0 && first_erp_rcpt == Some(usize::from(a.due.rcpt)) {
        a.metrics.inbound_message("auto_reply", mode.as_label());
    }
    auto_reply::decide(mode, auto, body)
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
