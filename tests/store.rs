//! The one RocksDB (`<data_dir>/db`, issue 12 item 4): every store is a column family of
//! it, what each store holds survives a restart, a delivery's statistics can commit in the
//! queue's batch, and a data directory of an earlier version (four separate databases) is
//! migrated on first start without losing queued mail — or refused when it is ambiguous.

mod common;
mod traffic;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use common::{Erp, TestServer, eventually, message};
use mxgate::clock::Clock;
use mxgate::config::{QueueConfig, StoreConfig};
use mxgate::db::{Db, DbError, Family};
use mxgate::envelope::Destination;
use mxgate::envelope::{Address, ListenerKind, QueueId, ReversePath};
use mxgate::metrics::Metrics;
use mxgate::queue::Outcome;
use mxgate::queue::{NewMessage, Queue, RcptState};
use mxgate::server::{Server, StartError};
use mxgate::stats::{Dims, Filter, Stats};
use mxgate::suppression::Source;
use rocksdb::{DB, IteratorMode, MergeOperands, Options};

const FAMILIES: [&str; 4] = ["queue", "stats", "suppressions", "warming"];

fn data(srv: &TestServer) -> PathBuf {
    srv.config.server.data_dir.clone()
}

fn dims() -> Dims {
    Dims {
        sending_domain: "example.test".into(),
        email_type: "transactional".into(),
        sending_ip: String::new(),
        provider: "gmail".into(),
    }
}

fn delivered(stats: &Stats) -> u64 {
    let now = stats.now_ms();
    let f = Filter {
        from_ms: now.saturating_sub(86_400_000),
        to_ms: now + 3_600_000,
        ..Filter::default()
    };
    stats.report(&f).expect("report").summary.delivered
}

/// A server whose ERP is down: the message it accepts stays queued.
async fn server_with_a_queued_message() -> (TestServer, QueueId) {
    let srv = TestServer::start_with_erp(Erp::reserve(), "").await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("kept", "must survive"),
    )
    .await
    .expect_code(250);
    let q = srv.running().queue.clone();
    let id = eventually(10, "an attempt failed", || {
        let q = q.clone();
        async move {
            let m = q.list(Some(RcptState::Deferred), 10).into_iter().next()?;
            Some(m.id)
        }
    })
    .await;
    let r = srv.running();
    r.suppressions
        .add("gone@else.test", "Invalid address", Source::Bounce, None)
        .await
        .expect("suppress");
    r.stats.delivered(r.stats.now_ms(), &dims());
    (srv, id)
}

/// Checks what [`server_with_a_queued_message`] stored, then lets the ERP answer.
async fn assert_everything_kept(srv: &mut TestServer, id: QueueId, delivered_count: u64) {
    let r = srv.running();
    let m = r.queue.get(id).expect("the queued message is still there");
    assert!(m.recipients[0].state.is_pending(), "{:?}", m.recipients[0]);
    assert!(r.suppressions.is_suppressed("gone@else.test"));
    assert_eq!(
        delivered(&r.stats),
        delivered_count,
        "the statistics counter"
    );
    srv.erp.up().await;
    wait_for_push(srv).await;
}

async fn wait_for_push(srv: &TestServer) {
    eventually(20, "the queued message reached the ERP", || {
        let pushes = srv.erp.pushes();
        async move {
            pushes
                .into_iter()
                .find(|p| String::from_utf8_lossy(&p.body).contains("must survive"))
        }
    })
    .await;
}

#[tokio::test]
async fn every_store_is_a_family_of_one_database_and_survives_a_restart() {
    let (mut srv, id) = server_with_a_queued_message().await;
    let data = data(&srv);
    assert!(data.join("db").join("CURRENT").is_file());
    for old in FAMILIES {
        assert!(!data.join(old).exists(), "no separate {old} database");
    }
    srv.restart().await;
    assert_everything_kept(&mut srv, id, 1).await;
    let running = srv.running.take().expect("running");
    assert!(running.shutdown().await, "drained");
    let mut names = DB::list_cf(&Options::default(), data.join("db")).expect("list families");
    names.sort();
    assert_eq!(
        names,
        ["default", "queue", "stats", "suppressions", "warming"]
    );
}

#[tokio::test]
async fn statistics_written_with_a_queue_change_commit_in_its_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let (clock, metrics) = (Clock::system(), Metrics::new());
    let db = Db::open(dir.path(), &StoreConfig::default()).expect("open");
    let q = Queue::in_db(&db, QueueConfig::default(), clock.clone(), metrics).expect("queue");
    let msg = NewMessage {
        listener: ListenerKind::Submission,
        peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: "erp.test".into(),
        mail_from: ReversePath::Address(Address::parse("erp@example.test").expect("addr")),
        recipients: vec![(
            Address::parse("bob@gmail.test").expect("addr"),
            Destination::Relay,
        )],
        body: b"Subject: x\r\n\r\nx\r\n".to_vec(),
    };
    let id = q.enqueue(msg).await.expect("enqueue");
    let at = clock.now_ms();
    let sent = Outcome::Sent {
        reply: "250 ok".into(),
    };
    let state = q
        .record_then_writing(
            id,
            0,
            &sent,
            |_, _| None,
            move |_, st| {
                assert_eq!(st, RcptState::Sent);
                vec![Stats::delivered_write(at, &dims())]
            },
        )
        .await
        .expect("record");
    assert_eq!(state.map(|(s, _)| s), Some(RcptState::Sent));
    q.close();
    db.close();

    let db = Db::open(dir.path(), &StoreConfig::default()).expect("reopen");
    let stats = Stats::in_db(&db, clock.clone());
    assert_eq!(delivered(&stats), 1);
    let q = Queue::in_db(&db, QueueConfig::default(), clock, Metrics::new()).expect("queue");
    assert_eq!(q.get(id).expect("msg").recipients[0].state, RcptState::Sent);
    q.close();
    db.close();
}

/// Issue 12 item 4 on the delivery path: an attempt's statistics (its hourly counter and,
/// for a delivery, the sending-IP and Message-ID records) are committed in the batch that
/// records the recipient's new state. The server's statistics handle is closed first, so
/// any statistics written beside the queue's commit are refused; after a restart every
/// send is counted all the same.
#[tokio::test]
async fn a_relayed_attempt_commits_its_statistics_in_the_batch_recording_its_state() {
    let sink = traffic::sink().await;
    let mut srv = TestServer::start(&traffic::relay_toml(&sink, "")).await;
    srv.running().stats.close();
    traffic::record_final(&srv, &sink, traffic::MIX).await;
    drop(sink);
    srv.restart().await;

    let (status, body) = srv.admin_get("/api/bounces/summary").await;
    assert_eq!(status, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (s["delivered"].as_u64(), s["bounced"].as_u64()),
        (Some(5), Some(4)),
        "{s}"
    );
    let stats = &srv.running().stats;
    let first = stats
        .message_of("<traffic-0-ann@gmail.com@erp.test>")
        .expect("the delivered Message-ID is remembered");
    assert_eq!(stats.sending_ip_of(first, 0), "127.0.0.1");
    srv.shutdown().await;
}

fn add_i64(_: &[u8], old: Option<&[u8]>, ops: &MergeOperands) -> Option<Vec<u8>> {
    let n = |v: &[u8]| v.try_into().map(i64::from_le_bytes).unwrap_or(0);
    let sum = ops.iter().fold(old.map_or(0, n), |s, op| s + n(op));
    Some(sum.to_le_bytes().to_vec())
}

/// Turns `<data>/db` into the layout of earlier versions: one plain database per store
/// in `<data>/<family>` holding that family's keys (the key layouts did not change), and
/// no `db`. The statistics keep one counter as an unmerged operand, as a crash leaves it.
fn make_legacy(data: &Path) {
    let db = Db::open(&data.join("db"), &StoreConfig::default()).expect("open");
    for family in Family::ALL {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_merge_operator_associative("mxgate_add_i64", add_i64);
        let old = DB::open(&opts, data.join(family.name())).expect("legacy db");
        db.with(family, |cf| {
            for item in cf.scan(b"", vec![0xff]) {
                let (k, v) = item?;
                old.put(&k, &v)?;
            }
            Ok::<_, DbError>(())
        })
        .expect("copy");
        if family == Family::Stats {
            for item in old.iterator(IteratorMode::Start) {
                let (k, _) = item.expect("read");
                if k.starts_with(b"h/") {
                    old.merge(&k, 2i64.to_le_bytes()).expect("merge");
                }
            }
        }
        old.flush().expect("flush");
    }
    db.close();
    std::fs::remove_dir_all(data.join("db")).expect("remove db");
}

#[tokio::test]
async fn an_old_data_directory_is_migrated_on_first_start_without_losing_queued_mail() {
    let (mut srv, id) = server_with_a_queued_message().await;
    srv.running.take().expect("running").shutdown().await;
    let data = data(&srv);
    make_legacy(&data);

    srv.restart().await;
    for old in FAMILIES {
        assert!(!data.join(old).exists(), "{old} moved out of the data dir");
        assert!(
            data.join("pre-db-stores")
                .join(old)
                .join("CURRENT")
                .is_file()
        );
    }
    assert!(!data.join("db.migrating").exists());
    let r = srv.running();
    assert_eq!(
        delivered(&r.stats),
        3,
        "1 put + the pending merge operand of 2"
    );
    r.stats.delivered(r.stats.now_ms(), &dims());
    assert_eq!(
        delivered(&r.stats),
        4,
        "the merge operator runs on the copy"
    );
    srv.restart().await;
    let r = srv.running();
    assert_eq!(
        delivered(&r.stats),
        4,
        "migrated once, not again at the next start"
    );
    let m = r.queue.get(id).expect("the queued message was migrated");
    assert!(m.recipients[0].state.is_pending());
    assert!(r.suppressions.is_suppressed("gone@else.test"));
    srv.erp.up().await;
    wait_for_push(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_migration_interrupted_before_moving_the_old_dirs_is_finished() {
    let (mut srv, id) = server_with_a_queued_message().await;
    srv.running.take().expect("running").shutdown().await;
    let data = data(&srv);
    make_legacy(&data);
    srv.restart().await;
    srv.running.take().expect("running").shutdown().await;
    // As if the process died between the rename of the copy and moving the old dirs.
    std::fs::rename(data.join("pre-db-stores/queue"), data.join("queue")).expect("put back");

    srv.restart().await;
    assert!(!data.join("queue").exists());
    assert!(data.join("pre-db-stores/queue/CURRENT").is_file());
    // 1 counted + the legacy merge operand of 2, copied once.
    assert_everything_kept(&mut srv, id, 3).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn an_old_store_next_to_a_database_that_never_copied_it_is_refused() {
    let (mut srv, _) = server_with_a_queued_message().await;
    srv.running.take().expect("running").shutdown().await;
    let data = data(&srv);
    // A backup of an earlier version restored into an upgraded data dir.
    let mut opts = Options::default();
    opts.create_if_missing(true);
    let old = DB::open(&opts, data.join("queue")).expect("old queue");
    old.put(b"m/x", b"{}").expect("put");
    drop(old);

    let err = match Server::start(srv.config.clone()).await {
        Ok(_) => panic!("started next to an unmigrated queue"),
        Err(e) => e,
    };
    assert!(
        matches!(err, StartError::Store(DbError::Unmigrated { .. })),
        "{err}"
    );
    let text = err.to_string();
    let queue_dir = data.join("queue").display().to_string();
    assert!(text.contains(&queue_dir), "{text}");
    assert!(text.contains("move"), "says what to do: {text}");
    assert!(data.join("queue/CURRENT").is_file(), "left alone");
}
