//! mxgate — the mail server an ERP puts on its alias domain.
//!
//! Follow one message by module name, in data-path order:
//!
//! 1. [`session`] — SMTP in: inbound (MX, port 25), submission (587), submissions (465).
//!    Parses commands ([`session::command`]) and message data ([`session::body`]).
//! 2. [`auth`] — who sent it: SPF, DKIM, DMARC verdicts (and outbound DKIM signing).
//! 3. [`routing`] — where each recipient goes: alias table, `reply+`/`bounce+` tokens,
//!    `+detail`, catchall → a [`routing::Destination`].
//! 4. [`queue`] — durable store on RocksDB: [`queue::Queue::enqueue`] returns only after the
//!    message is fsync'd (group commit), and only then does the session answer 250.
//! 5. [`delivery`] — workers take due recipients from the queue and push them to the ERP
//!    (HTTP), a Maildir, or (relay) a remote MTA; outcomes go back to the queue.
//!
//! DSNs coming back: [`session`] → [`routing`] (`bounce+TOKEN`) → [`queue`] → [`bounce`].
//!
//! Outcomes feed [`stats`] (hourly counters in RocksDB behind `/api/bounces/...` and
//! `/dashboard`, via [`stats::observe::Observer`]) and [`events`] (the ERP's webhook).
//!
//! Every store (queue, statistics, suppressions, warming counters) is a column family of
//! one RocksDB, [`db`], under `server.data_dir`.
//!
//! Around the path: [`server`] wires the stages together (the only place that does) and
//! reloads the config-derived ones ([`live`] holds them), [`config`] loads and validates
//! `mxgate.toml`, [`metrics`] names every metric, [`admin`]
//! serves `/metrics`, `/healthz` and the API, [`cli`] is the command line.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod auth;
pub mod bounce;
pub mod delivery;
pub mod envelope;
pub mod queue;
pub mod routing;
pub mod session;

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod dns;
pub mod events;
pub mod live;
pub mod metrics;
pub mod server;
pub mod stats;
pub mod tls;
