//! Redis round trips per relayed recipient (issue 18's goal: at most two), as Redis itself
//! counts them (`INFO commandstats`): a count, not a timing.

use std::collections::HashMap;

use super::*;

/// `cmdstat_<command>` → calls since Redis started.
async fn command_calls(redis: &Redis) -> HashMap<String, u64> {
    let mut conn = redis.connection().await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

fn scripts(calls: &HashMap<String, u64>) -> u64 {
    ["evalsha", "eval"]
        .iter()
        .map(|c| calls.get(*c).copied().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn a_relayed_recipient_costs_two_redis_round_trips_warming_and_bounce_window() {
    let redis = Redis::start().await;
    let sink = sink().await;
    let a = node(&redis, "a", &warming_toml(&sink)).await;
    wait_up(&a, 1.0).await;
    // One recipient first: Redis learns both scripts (a first EVALSHA may be refused with
    // NOSCRIPT, then loaded), which is once per script, not per recipient.
    relay(&a, "warm", 1).await;
    eventually(20, "the first recipient sent", || async {
        (states(&a).0 == 1).then_some(())
    })
    .await;
    // Its bounce window is recorded after the queue says `sent` (the report follows the
    // record): wait for that script call too, or it lands in the count below.
    eventually(
        20,
        "the first recipient's bounce window in Redis",
        || async {
            let calls = command_calls(&redis).await;
            (calls.get("hexists").copied().unwrap_or(0) >= 1).then_some(())
        },
    )
    .await;
    let before = command_calls(&redis).await;
    relay(&a, "rt", 9).await;
    eventually(20, "9 more recipients sent", || async {
        (states(&a).0 == 10).then_some(())
    })
    .await;
    let after = command_calls(&redis).await;
    let mut grew: Vec<_> = after
        .iter()
        .map(|(c, n)| (c.clone(), n - before.get(c).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect();
    grew.sort();
    // Per recipient: the warming admission and the bounce window, one script each. The
    // rest of the traffic (health PING, the suspensions' compare, the suppression log's
    // XREAD) runs per second, not per recipient.
    let n = scripts(&after) - scripts(&before);
    // At most 2 per recipient (18 when Redis answered every one; a moment marked down under
    // load makes a node judge locally and call fewer), and Redis was used at all.
    assert!(
        n > 0 && n <= 18,
        "{n} script calls for 9 recipients; every command: {grew:?}"
    );
    eprintln!("redis commands during 9 relayed recipients: {grew:?}");
    a.shutdown().await;
}
