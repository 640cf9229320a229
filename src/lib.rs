//! mxgate — the mail server an ERP puts on its alias domain.
//!
//! Follow one message by module name, in data-path order:
//!
//! 1. [`session`] — SMTP in: inbound (MX, port 25), submission (587), submissions (465).
//!    Parses commands ([`session::command`]) and message data ([`session::body`]); every
//!    reply it sends is in [`reply`].
//! 2. [`auth`] — who sent it: SPF, DKIM, DMARC verdicts (and outbound DKIM signing).
//! 3. [`routing`] — where each recipient goes: alias table, `reply+`/`bounce+` tokens,
//!    `+detail`, catchall → an [`envelope::Destination`].
//! 4. [`queue`] — durable store on RocksDB: [`queue::Queue::enqueue`] returns only after the
//!    message is fsync'd (group commit), and only then does the session answer 250.
//! 5. [`delivery`] — workers take due recipients from the queue and push them to the ERP
//!    (HTTP), a Maildir, or (relay) a remote MTA; each attempt's [`queue::Outcome`] goes back
//!    to the queue.
//! 6. [`report`] — the one outcome sink: each outcome arrives as one [`report::Record`] and
//!    becomes metrics, [`stats`] (hourly counters behind `/api/bounces/...` and
//!    `/dashboard`), [`events`] (the ERP's webhook), [`suppression`] of dead or complaining
//!    addresses and [`suspension`] of sending domains that bounce.
//!
//! DSNs and complaints coming back: [`session`] → [`routing`] (`bounce+TOKEN`) → [`queue`]
//! → [`intake`], which parses them with [`bounce`] (classification, [`providers`]), closes
//! the loop on the original recipient in [`queue`] and hands the record to [`report`].
//!
//! Types that cross stages live at the bottom: [`envelope`], [`reply`], [`providers`],
//! [`clock`], [`live`], and [`message`] (header-section reading and editing for every
//! stage) and [`error_chain`]. Every store (queue, statistics, suppressions, warming
//! counters) is a column family of one RocksDB, [`db`], under `server.data_dir`. Around the path: [`server`] wires the stages together (the only
//! place that does) and reloads the config-derived ones ([`live`] holds them), [`config`]
//! loads and validates `mxgate.toml`, [`metrics`] names every metric, [`dns`], [`tls`] and
//! [`http_client`] are shared infrastructure, [`admin`] serves `/metrics`, `/healthz` and
//! the API, [`cli`] is the command line. `.ci/layers.py` holds the layer order: no module
//! imports one above it, and no modules import each other.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod auth;
pub mod bounce;
pub mod delivery;
pub mod envelope;
pub mod events;
pub mod intake;
pub mod message;
pub mod providers;
pub mod queue;
pub mod reply;
pub mod report;
pub mod routing;
pub mod session;
pub mod stats;
pub mod suppression;
pub mod suspension;

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod dns;
pub mod error_chain;
pub mod http_client;
pub mod live;
pub mod metrics;
pub mod server;
pub mod tls;
