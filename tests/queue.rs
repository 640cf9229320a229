//! The durable queue on a real RocksDB in a temp dir: round trips, durability across a drop
//! and across a process abort, group commit, state transitions, restart.

#[path = "common/metrics.rs"]
mod metrics;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mxgate::bounce::Category;
use mxgate::clock::Clock;
use mxgate::config::{HumanDuration, QueueConfig};
use mxgate::envelope::{Address, Destination, ListenerKind, QueueId, ReversePath, Stream};
use mxgate::metrics::{Metrics, STORE_COMMITS};
use mxgate::queue::{NewMessage, Outcome, Queue, QueueOptions, RcptState, StoreError};
use tempfile::TempDir;

/// On the real disk (not tmpfs), so fsync costs what it costs in production.
fn tempdir() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

fn cfg() -> QueueConfig {
    QueueConfig {
        retry_initial: HumanDuration::secs(60),
        retry_max: HumanDuration::secs(3600),
        expire_after: HumanDuration::secs(86_400),
        concurrency: 4,
        ..QueueConfig::default()
    }
}

fn open(dir: &Path, clock: &Clock, metrics: &Metrics) -> Queue {
    Queue::open(&dir.join("queue"), cfg(), clock.clone(), metrics.clone()).expect("open queue")
}

fn route(alias: &str) -> Destination {
    Destination::Route {
        route: "crm".into(),
        alias: alias.into(),
        thread: None,
        detail: None,
    }
}

fn message(body: &str, rcpts: &[(&str, Destination)]) -> NewMessage {
    NewMessage {
        listener: ListenerKind::Inbound,
        peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: "client.test".into(),
        mail_from: ReversePath::Address(Address::parse("alice@client.test").expect("addr")),
        recipients: rcpts
            .iter()
            .map(|(a, d)| (Address::parse(a).expect("addr"), d.clone()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn sales(body: &str) -> NewMessage {
    message(body, &[("sales@example.test", route("sales@example.test"))])
}

fn due_now(q: &Queue, clock: &Clock) -> Vec<(QueueId, u16)> {
    let scan = q.due(clock.now_ms(), &HashSet::new(), 100).expect("due");
    scan.ready.iter().map(|d| (d.id, d.rcpt)).collect()
}

fn count(q: &Queue, st: RcptState) -> u64 {
    q.counts().get(&st).copied().unwrap_or(0)
}

#[tokio::test]
async fn enqueued_message_reads_back_with_its_body_and_queued_recipients() {
    let dir = tempdir();
    let (clock, metrics) = (Clock::system(), Metrics::new());
    let q = open(dir.path(), &clock, &metrics);
    let id = q
        .enqueue(sales("Subject: hi\r\n\r\nhello\r\n"))
        .await
        .expect("enqueue");
    let m = q.get(id).expect("stored");
    assert_eq!(m.id, id);
    assert_eq!(m.mail_from, "alice@client.test");
    assert_eq!(m.size, 22);
    assert_eq!(m.recipients.len(), 1);
    assert_eq!(m.recipients[0].address, "sales@example.test");
    assert_eq!(m.recipients[0].state, RcptState::Queued);
    assert_eq!(
        q.body(id).as_deref(),
        Some(&b"Subject: hi\r\n\r\nhello\r\n"[..])
    );
    assert_eq!(due_now(&q, &clock), [(id, 0)]);
    assert_eq!(count(&q, RcptState::Queued), 1);
    q.close();
}

#[tokio::test]
async fn message_survives_dropping_the_queue_without_close() {
    let dir = tempdir();
    let (clock, metrics) = (Clock::system(), Metrics::new());
    let q = open(dir.path(), &clock, &metrics);
    let id = q.enqueue(sales("durable\r\n")).await.expect("enqueue");
    drop(q);
    let q = open(dir.path(), &clock, &metrics);
    assert_eq!(q.body(id).as_deref(), Some(&b"durable\r\n"[..]));
    assert_eq!(due_now(&q, &clock), [(id, 0)], "pending again after reopen");
    assert_eq!(
        count(&q, RcptState::Queued),
        1,
        "counts rebuilt from the index"
    );
}

const CRASH_CHILD: &str = "MXGATE_QUEUE_TEST_CRASH_DIR";

/// Re-runs this test binary as a child that enqueues, prints each acknowledged id, records
/// the first ten as sent (printing those too), and aborts (no destructors, no flush): every
/// printed id must be in the store afterwards, and every recorded outcome too — an outcome
/// is not fsync'd before its answer ([`Outcome`] writes are lazy) but is in the WAL, which
/// a crash of the process (not of the machine) keeps.
#[test]
fn acknowledged_messages_survive_a_process_abort() {
    if let Ok(dir) = std::env::var(CRASH_CHILD) {
        crash_child(Path::new(&dir));
    }
    let dir = tempdir();
    let out = std::process::Command::new(std::env::current_exe().expect("test exe"))
        .args([
            "--exact",
            "acknowledged_messages_survive_a_process_abort",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD, dir.path())
        .output()
        .expect("run child");
    assert!(!out.status.success(), "the child aborts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let acked: Vec<QueueId> = stdout
        .lines()
        // libtest prints its "test ... " prefix on the first line, so search, not strip.
        .filter_map(|l| l.find("ACK ").map(|at| &l[at + 4..]))
        .map(|s| s.trim().parse().expect("id"))
        .collect();
    assert_eq!(acked.len(), 40, "child output: {stdout}");
    let sent: Vec<QueueId> = stdout
        .lines()
        .filter_map(|l| l.find("SENT ").map(|at| &l[at + 5..]))
        .map(|s| s.trim().parse().expect("id"))
        .collect();
    assert_eq!(sent.len(), 10, "child output: {stdout}");
    let q = open(dir.path(), &Clock::system(), &Metrics::new());
    for id in acked {
        let body = q
            .body(id)
            .unwrap_or_else(|| panic!("{id} acknowledged but lost"));
        assert!(body.starts_with(b"crash "));
    }
    for id in sent {
        let state = q.get(id).expect("message").recipients[0].state;
        assert_eq!(state, RcptState::Sent, "{id}: outcome lost in the abort");
    }
}

fn crash_child(dir: &Path) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let q = open(dir, &Clock::system(), &Metrics::new());
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let q = q.clone();
                tokio::spawn(async move {
                    let id = q
                        .enqueue(sales(&format!("crash {i}\r\n")))
                        .await
                        .expect("enqueue");
                    println!("ACK {id}");
                    id
                })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.expect("task"));
        }
        for id in ids.into_iter().take(10) {
            let reply = "250 ok".to_string();
            let st = q.record(id, 0, &Outcome::Sent { reply }).await;
            assert_eq!(st.expect("record"), Some(RcptState::Sent));
            println!("SENT {id}");
        }
    });
    std::process::abort()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_fsyncs() {
    let dir = tempdir();
    let (clock, metrics) = (Clock::system(), Metrics::new());
    let q = open(dir.path(), &clock, &metrics);
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (q, start) = (q.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                q.enqueue(sales(&format!("m{i}\r\n")))
                    .await
                    .expect("enqueue")
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.expect("task"));
    }
    assert_eq!(ids.len(), 50);
    assert_eq!(count(&q, RcptState::Queued), 50);
    let text = metrics.render();
    let commits = metrics::sample(&text, STORE_COMMITS, &[])
        .unwrap_or_else(|| panic!("{STORE_COMMITS} not in:\n{text}")) as u64;
    assert!(
        commits < 50,
        "{commits} fsyncs for 50 messages: no group commit"
    );
    q.close();
}

/// A delivery outcome is answered once it is in the WAL, without an fsync of its own (a
/// machine crash can only make the attempt happen again); the next enqueue's fsync makes it
/// durable with itself.
#[tokio::test]
async fn outcomes_are_answered_without_an_fsync_of_their_own() {
    let dir = tempdir();
    let (clock, metrics) = (Clock::system(), Metrics::new());
    let q = open(dir.path(), &clock, &metrics);
    let commits = || metrics::sample(&metrics.render(), STORE_COMMITS, &[]).unwrap_or(0.0);
    let ids = [
        q.enqueue(sales("a\r\n")).await.expect("enqueue"),
        q.enqueue(sales("b\r\n")).await.expect("enqueue"),
    ];
    assert_eq!(commits(), 2.0, "each enqueue alone: one fsync each");
    let sent = Outcome::Sent {
        reply: "250 ok".into(),
    };
    let st = q.record(ids[0], 0, &sent).await.expect("record");
    assert_eq!(st, Some(RcptState::Sent));
    let deferred = Outcome::deferred("451 later");
    let st = q.record(ids[1], 0, &deferred).await.expect("record");
    assert_eq!(st, Some(RcptState::Deferred));
    assert_eq!(commits(), 2.0, "outcomes cost no fsync");
    assert_eq!(
        q.get(ids[0]).expect("msg").recipients[0].state,
        RcptState::Sent
    );
    assert_eq!(
        (count(&q, RcptState::Sent), count(&q, RcptState::Deferred)),
        (1, 1),
        "counts follow a lazy write at once"
    );
    q.enqueue(sales("c\r\n")).await.expect("enqueue");
    assert_eq!(commits(), 3.0);
    q.close();
}

#[tokio::test]
async fn enqueue_past_its_deadline_fails_with_451_never_a_late_ok() {
    let dir = tempdir();
    let opts = QueueOptions {
        commit_deadline: Duration::ZERO,
    };
    let q = Queue::open_with(
        &dir.path().join("queue"),
        cfg(),
        Clock::system(),
        Metrics::new(),
        opts,
    )
    .expect("open");
    // A zero deadline still races a fast disk (the timer fires on the runtime's next
    // millisecond tick), so send a crowd of 256 KiB messages at once: a group commit of them
    // takes several milliseconds, and those queued behind it miss. Every Ok must be stored;
    // every miss must be a 451.
    let filler = format!("{}\r\n", "x".repeat(76)).repeat(256 * 1024 / 78);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (q, body) = (q.clone(), format!("late {i}\r\n{filler}"));
            tokio::spawn(async move { q.enqueue(sales(&body)).await })
        })
        .collect();
    let mut missed = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(id) => assert!(q.body(id).is_some(), "Ok for {id} but not stored"),
            Err(err) => {
                assert!(err.to_string().contains("did not commit"), "{err}");
                assert_eq!(err.reply().code, 451);
                missed += 1;
            }
        }
    }
    eprintln!("{missed} of 200 enqueues missed the zero deadline");
    assert!(
        missed > 0,
        "200 concurrent enqueues all beat a zero deadline"
    );
    q.close();
}

#[tokio::test]
async fn closed_queue_refuses_work_and_reads_nothing() {
    let dir = tempdir();
    let q = open(dir.path(), &Clock::system(), &Metrics::new());
    let id = q.enqueue(sales("x\r\n")).await.expect("enqueue");
    q.close();
    q.close();
    assert!(q.get(id).is_none());
    assert!(matches!(q.cancel(id).await, Err(StoreError::Closed)));
    let err = q.enqueue(sales("y\r\n")).await.expect_err("closed");
    assert_eq!(err.reply().code, 451);
}

#[tokio::test]
async fn deferral_leaves_the_schedule_until_its_backoff_is_due() {
    let dir = tempdir();
    let clock = Clock::system();
    let q = open(dir.path(), &clock, &Metrics::new());
    let id = q.enqueue(sales("x\r\n")).await.expect("enqueue");
    let st = q
        .record(id, 0, &Outcome::deferred("HTTP 503 Service Unavailable"))
        .await
        .expect("record");
    assert_eq!(st, Some(RcptState::Deferred));
    let r = q.get(id).expect("msg").recipients[0].clone();
    assert_eq!(r.attempts, 1);
    assert_eq!(
        r.last_reply.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );
    assert!(due_now(&q, &clock).is_empty(), "not due before the backoff");
    clock.advance(Duration::from_secs(73)); // 60 s + 20% jitter, plus margin
    assert_eq!(due_now(&q, &clock), [(id, 0)]);
    assert_eq!(
        (count(&q, RcptState::Queued), count(&q, RcptState::Deferred)),
        (0, 1)
    );
    assert_eq!(q.list(Some(RcptState::Deferred), 10).len(), 1);
    assert!(q.list(Some(RcptState::Queued), 10).is_empty());
    q.close();
}

#[tokio::test]
async fn deferral_after_expire_after_expires_the_recipient() {
    let dir = tempdir();
    let clock = Clock::system();
    let q = open(dir.path(), &clock, &Metrics::new());
    let id = q.enqueue(sales("x\r\n")).await.expect("enqueue");
    clock.advance(Duration::from_secs(86_400 + 1));
    let st = q
        .record(id, 0, &Outcome::deferred("connection refused"))
        .await
        .expect("record");
    assert_eq!(st, Some(RcptState::Expired));
    assert!(due_now(&q, &clock).is_empty());
    assert_eq!(count(&q, RcptState::Expired), 1);
    q.close();
}

#[tokio::test]
async fn cancel_stops_delivery_and_a_late_outcome_is_ignored() {
    let dir = tempdir();
    let clock = Clock::system();
    let q = open(dir.path(), &clock, &Metrics::new());
    let id = q.enqueue(sales("x\r\n")).await.expect("enqueue");
    assert_eq!(q.cancel(id).await.expect("cancel"), 1);
    assert!(due_now(&q, &clock).is_empty());
    let late = Outcome::Sent {
        reply: "HTTP 200 OK".into(),
    };
    assert_eq!(q.record(id, 0, &late).await.expect("record"), None);
    assert_eq!(
        q.get(id).expect("msg").recipients[0].state,
        RcptState::Cancelled
    );
    assert_eq!(q.cancel(id).await.expect("cancel again"), 0);
    assert!(matches!(
        q.cancel(QueueId(1)).await,
        Err(StoreError::NotFound(_))
    ));
    q.close();
}

#[tokio::test]
async fn retry_requeues_bounced_and_retry_failed_requeues_everything_failed() {
    let dir = tempdir();
    let clock = Clock::system();
    let q = open(dir.path(), &clock, &Metrics::new());
    let a = q.enqueue(sales("a\r\n")).await.expect("enqueue");
    let b = q.enqueue(sales("b\r\n")).await.expect("enqueue");
    let bounced = Outcome::Bounced {
        category: None,
        reply: "HTTP 404 Not Found".into(),
    };
    q.record(a, 0, &bounced).await.expect("record");
    q.record(b, 0, &Outcome::deferred("down"))
        .await
        .expect("record");
    assert!(due_now(&q, &clock).is_empty());
    assert_eq!(q.retry(a).await.expect("retry"), 1);
    assert_eq!(due_now(&q, &clock), [(a, 0)]);
    q.record(a, 0, &bounced).await.expect("record");
    assert_eq!(q.retry_failed().await.expect("retry failed"), 2);
    let mut due = due_now(&q, &clock);
    due.sort();
    assert_eq!(due, [(a, 0), (b, 0)]);
    assert_eq!(
        q.get(a).expect("a").recipients[0].attempts,
        2,
        "history kept"
    );
    q.close();
}

#[tokio::test]
async fn bounce_recipients_are_stored_for_the_bounce_stage_not_scheduled() {
    let dir = tempdir();
    let clock = Clock::system();
    let q = open(dir.path(), &clock, &Metrics::new());
    let dsn = Destination::Bounce {
        token: "abc".into(),
    };
    let id = q
        .enqueue(message("dsn\r\n", &[("bounce+abc@example.test", dsn)]))
        .await
        .expect("enqueue");
    let r = q.get(id).expect("msg").recipients[0].clone();
    assert_eq!(r.state, RcptState::Sent);
    assert_eq!(
        r.last_reply.as_deref(),
        Some("stored for bounce processing")
    );
    assert!(due_now(&q, &clock).is_empty());
    assert_eq!(q.pending_bounces(), [id]);
    q.bounce_processed(id).await.expect("processed");
    assert!(q.pending_bounces().is_empty());
    q.close();
}

#[tokio::test]
async fn each_recipient_has_its_own_state() {
    let dir = tempdir();
    let clock = Clock::system();
    let q = open(dir.path(), &clock, &Metrics::new());
    let rcpts = [
        ("sales@example.test", route("sales@example.test")),
        ("support@example.test", route("support@example.test")),
    ];
    let id = q
        .enqueue(message("two\r\n", &rcpts))
        .await
        .expect("enqueue");
    assert_eq!(due_now(&q, &clock), [(id, 0), (id, 1)]);
    let sent = Outcome::Sent {
        reply: "HTTP 200 OK".into(),
    };
    // Recorded concurrently: the single writer keeps both updates of the same message.
    let deferred = Outcome::deferred("503");
    let (r0, r1) = tokio::join!(q.record(id, 0, &sent), q.record(id, 1, &deferred));
    assert_eq!(
        (r0.expect("r0"), r1.expect("r1")),
        (Some(RcptState::Sent), Some(RcptState::Deferred))
    );
    let m = q.get(id).expect("msg");
    assert_eq!(
        (m.recipients[0].state, m.recipients[1].state),
        (RcptState::Sent, RcptState::Deferred)
    );
    assert_eq!(q.list(None, 10).len(), 1);
    assert_eq!(q.list(Some(RcptState::Sent), 10).len(), 1);
    // `get` answers from the decoded metas the committer keeps (queue::hot), `list` from
    // RocksDB: the two say the same.
    assert_eq!(format!("{m:?}"), format!("{:?}", q.list(None, 10)[0]));
    q.close();
}

#[tokio::test]
async fn restart_resumes_the_schedule_with_states_and_counts() {
    let dir = tempdir();
    let (clock, metrics) = (Clock::system(), Metrics::new());
    let q = open(dir.path(), &clock, &metrics);
    let a = q.enqueue(sales("a\r\n")).await.expect("enqueue");
    let b = q.enqueue(sales("b\r\n")).await.expect("enqueue");
    q.record(a, 0, &Outcome::Sent { reply: "ok".into() })
        .await
        .expect("record");
    q.close();
    let q = open(dir.path(), &clock, &metrics);
    assert_eq!(due_now(&q, &clock), [(b, 0)]);
    assert_eq!(
        (count(&q, RcptState::Sent), count(&q, RcptState::Queued)),
        (1, 1)
    );
    q.close();
}

/// The schedule scan seeks past the front of the index (where delivered recipients leave
/// tombstones): whatever is added later, due now or after a backoff, is still found.
#[tokio::test]
async fn the_schedule_finds_new_and_deferred_entries_behind_many_delivered_ones() {
    let dir = tempdir();
    let clock = Clock::system();
    let q = open(dir.path(), &clock, &Metrics::new());
    for i in 0..200 {
        let id = q
            .enqueue(sales(&format!("m{i}\r\n")))
            .await
            .expect("enqueue");
        assert_eq!(due_now(&q, &clock), [(id, 0)]);
        let sent = Outcome::Sent {
            reply: "250 ok".into(),
        };
        q.record(id, 0, &sent).await.expect("record");
        assert!(due_now(&q, &clock).is_empty());
    }
    let later = q.enqueue(sales("later\r\n")).await.expect("enqueue");
    let deferred = Outcome::deferred("451 try later");
    assert_eq!(due_now(&q, &clock), [(later, 0)]);
    q.record(later, 0, &deferred).await.expect("record");
    let now = q.enqueue(sales("now\r\n")).await.expect("enqueue");
    assert_eq!(
        due_now(&q, &clock),
        [(now, 0)],
        "the deferred one waits, the new one is due"
    );
    clock.advance(Duration::from_secs(73));
    assert_eq!(
        due_now(&q, &clock),
        [(now, 0), (later, 0)],
        "earliest due first"
    );
    q.close();
}

/// The scheduler reads the `d/` index from memory, kept by the committer: after enqueues
/// (one mass), outcomes, a cancel and a retry it holds exactly what a restart reads back from
/// the store.
#[tokio::test]
async fn the_schedule_in_memory_is_the_one_the_store_holds() {
    let dir = tempdir();
    let (clock, metrics) = (Clock::system(), Metrics::new());
    let q = open(dir.path(), &clock, &metrics);
    let two = [
        ("sales@example.test", route("sales@example.test")),
        ("support@example.test", route("support@example.test")),
    ];
    let a = q.enqueue(message("a\r\n", &two)).await.expect("enqueue");
    let b = q.enqueue(sales("b\r\n")).await.expect("enqueue");
    let c = q.enqueue(sales("c\r\n")).await.expect("enqueue");
    let d = q.enqueue(sales("d\r\n")).await.expect("enqueue");
    let e = q
        .enqueue_stream(sales("e\r\n"), Stream::Mass)
        .await
        .expect("enqueue");
    let sent = Outcome::Sent { reply: "ok".into() };
    let bounced = Outcome::Bounced {
        category: None,
        reply: "550 no".into(),
    };
    q.record(a, 0, &sent).await.expect("record");
    q.record(a, 1, &Outcome::deferred("451 later"))
        .await
        .expect("record");
    assert_eq!(q.cancel(b).await.expect("cancel"), 1);
    q.record(c, 0, &bounced).await.expect("record");
    assert_eq!(q.retry(c).await.expect("retry"), 1);
    let all = |q: &Queue| {
        let far = clock.now_ms() + 86_400_000;
        q.due(far, &HashSet::new(), 100).expect("due").ready
    };
    let before = all(&q);
    let mut keys: Vec<_> = before.iter().map(|x| (x.id, x.rcpt, x.mass)).collect();
    keys.sort();
    let mut want = vec![(a, 1, false), (c, 0, false), (d, 0, false), (e, 0, true)];
    want.sort();
    assert_eq!(
        keys, want,
        "deferred, retried, queued and mass; not sent or cancelled"
    );
    q.close();
    let q = open(dir.path(), &clock, &metrics);
    assert_eq!(
        all(&q),
        before,
        "same entries, same times, same order after a restart"
    );
    q.close();
}

#[tokio::test]
async fn a_failure_and_the_dsn_it_owes_are_written_together_or_not_at_all() {
    let dir = tempdir();
    let (clock, metrics) = (Clock::system(), Metrics::new());
    let q = open(dir.path(), &clock, &metrics);
    let id = q.enqueue(sales("original\r\n")).await.expect("enqueue");
    let bounced = Outcome::Bounced {
        category: Some(Category::InvalidAddress),
        reply: "550 5.1.1 unknown".into(),
    };
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen2 = seen.clone();
    let recorded = q
        .record_then(id, 0, &bounced, move |msg, state| {
            // The follow-up sees the message as recorded.
            *seen2.lock().expect("lock") = Some((msg.recipients[0].attempts, state));
            Some(message(
                "dsn body\r\n",
                &[("alice@client.test", route("sales"))],
            ))
        })
        .await
        .expect("record");
    let (state, dsn) = recorded.expect("recipient was pending");
    assert_eq!(state, RcptState::Bounced);
    assert_eq!(*seen.lock().expect("lock"), Some((1, RcptState::Bounced)));
    let dsn = dsn.expect("a follow-up message");
    // Both survive a drop without close (one batch, fsync'd before the reply).
    drop(q);
    let q = open(dir.path(), &clock, &metrics);
    assert_eq!(
        q.get(id).expect("msg").recipients[0].state,
        RcptState::Bounced
    );
    assert_eq!(q.body(dsn).as_deref(), Some(&b"dsn body\r\n"[..]));
    assert_eq!(due_now(&q, &clock), [(dsn, 0)], "the DSN is scheduled");
    // A recipient no longer pending changes nothing and queues nothing.
    let late = q
        .record_then(id, 0, &bounced, |_, _| {
            Some(message("never\r\n", &[("x@client.test", route("sales"))]))
        })
        .await
        .expect("record");
    assert_eq!(late, None);
    assert_eq!(q.list(None, 10).len(), 2);
    q.close();
}
