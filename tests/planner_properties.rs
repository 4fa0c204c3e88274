//! Property tests of planning against the real SQLite ledger: whatever the
//! sequence of polls, sends, state changes and restarted waits, a series
//! never exceeds `max_notices`, never sends two notices closer than
//! `repeat_every`, never skips a number, and never sends for a ticket that
//! the latest poll did not show waiting under the policy.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use interim::config::{self, Config};
use interim::notice::Status;
use interim::planner;
use interim::store::Store;
use interim::ticket::Ticket;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Advance(u32),
    Poll,
    Dispatch { fails: bool },
    SetMatching(bool),
    RestartWait,
    Remove,
    Return,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (60u32..=14 * 3600).prop_map(Op::Advance),
        4 => Just(Op::Poll),
        4 => Just(Op::Dispatch { fails: false }),
        1 => Just(Op::Dispatch { fails: true }),
        1 => any::<bool>().prop_map(Op::SetMatching),
        1 => Just(Op::RestartWait),
        1 => Just(Op::Remove),
        1 => Just(Op::Return),
    ]
}

fn write_config(
    dir: &std::path::Path,
    after: u32,
    repeat: Option<u32>,
    max: Option<u32>,
) -> Config {
    let repeat_line = repeat
        .map(|r| format!("repeat_every = \"{r}s\"\n"))
        .unwrap_or_default();
    let max_line = max
        .map(|m| format!("max_notices = {m}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[daemon]
poll_interval = "30s"
[store]
url = "sqlite://{dir}/ledger.db"
[source]
kind = "sql"
url = "sqlite://{dir}/unused.db"
query = "SELECT 1"
[channels.out]
kind = "file"
path = "{dir}/out"
format = "json"
[[policies]]
name = "p"
match = {{ state = ["open"] }}
after = "{after}s"
{repeat_line}{max_line}channel = "out"
template = "interim"
"#,
        dir = dir.display()
    );
    let path = dir.join("interim.toml");
    std::fs::write(&path, text).expect("write config");
    config::load(&path).expect("valid config")
}

#[derive(Debug)]
struct Sent {
    episode: DateTime<Utc>,
    number: u32,
    at: DateTime<Utc>,
}

fn run_case(
    after: u32,
    repeat: Option<u32>,
    max: Option<u32>,
    ops: Vec<Op>,
) -> Result<usize, TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), after, repeat, max);
    let settings = config.settings.clone();
    let policy = settings.policies[0].clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = Store::open(&settings.store.url).await.expect("store");
        let mut now = Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).single().expect("time");
        let mut ticket = Ticket {
            id: "T1".into(),
            number: None,
            subject: None,
            state: "open".into(),
            priority: None,
            queue: None,
            origin: None,
            customer_email: None,
            customer_name: None,
            language: None,
            timezone: None,
            waiting_since: now,
            updated_at: None,
            thread_message_id: None,
            extra: Default::default(),
        };
        let mut present = true;
        // What the latest poll saw: (present and matching, episode).
        let mut last_poll: Option<(bool, DateTime<Utc>)> = None;
        let mut sent: Vec<Sent> = Vec::new();
        for op in ops {
            match op {
                Op::Advance(secs) => now += chrono::Duration::seconds(secs.into()),
                Op::SetMatching(m) => ticket.state = if m { "open".into() } else { "waiting_for_customer".into() },
                Op::RestartWait => ticket.waiting_since = now,
                Op::Remove => present = false,
                Op::Return => present = true,
                Op::Poll => {
                    let tickets: Vec<Ticket> = if present { vec![ticket.clone()] } else { vec![] };
                    let series = store.load_series(false).await.expect("series");
                    let plan = planner::plan(&settings, &tickets, &series, false);
                    store.apply_plan(&plan, false, now, None).await.expect("apply");
                    last_poll = Some((present && ticket.state == "open", interim::notice::truncate_millis(ticket.waiting_since)));
                }
                Op::Dispatch { fails } => {
                    let claimed = store.claim_due("out", now, 100, Duration::from_secs(30), "test").await.expect("claim");
                    for n in claimed {
                        prop_assert_eq!(store.status_of(&n.id).await.expect("status"), Some(Status::Pending));
                        let (matching, episode) = last_poll.expect("a notice exists only after a poll");
                        prop_assert!(matching, "notice {} claimed although the latest poll did not show the ticket waiting under the policy", n.number);
                        prop_assert_eq!(episode, n.episode, "notice of an old episode claimed");
                        let status = if fails { Status::Dead } else { Status::Sent };
                        store.record_done(&n, status, now, now, None, None).await.expect("record");
                        sent.push(Sent { episode: n.episode, number: n.number, at: now });
                    }
                }
            }
        }
        let mut by_episode: BTreeMap<DateTime<Utc>, Vec<&Sent>> = BTreeMap::new();
        for s in &sent {
            by_episode.entry(s.episode).or_default().push(s);
        }
        for (episode, notices) in by_episode {
            prop_assert!(notices.len() as u32 <= policy.max_notices, "episode {episode}: {} notices > max {}", notices.len(), policy.max_notices);
            for (i, s) in notices.iter().enumerate() {
                prop_assert_eq!(s.number, i as u32 + 1, "episode {}: numbers skipped or repeated: {:?}", episode, notices);
                prop_assert!(s.at >= episode + chrono::Duration::seconds(after.into()), "sent before `after`");
            }
            if let Some(r) = repeat {
                for pair in notices.windows(2) {
                    prop_assert!(pair[1].at - pair[0].at >= chrono::Duration::seconds(r.into()), "two notices closer than repeat_every: {:?}", pair);
                }
            }
        }
        store.close().await;
        Ok(sent.len())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("INTERIM_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48), ..ProptestConfig::default() })]

    #[test]
    fn a_series_never_exceeds_its_limits_whatever_happens(
        after in 0u32..=6 * 3600,
        repeat in proptest::option::of(600u32..=2 * 86_400),
        max in 1u32..=4,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let max = repeat.map(|_| max);
        run_case(after, repeat, max, ops)?;
    }
}

#[test]
fn after_downtime_the_overdue_notice_goes_out_once_and_the_next_waits() {
    // 3 notices, every hour; the daemon was down for a day: one notice now,
    // the next an hour after it, never a burst of three.
    let mut ops = vec![
        Op::Advance(86_400),
        Op::Poll,
        Op::Dispatch { fails: false },
        Op::Poll,
        Op::Dispatch { fails: false },
        Op::Advance(3599),
        Op::Poll,
        Op::Dispatch { fails: false },
    ];
    assert_eq!(
        run_case(60, Some(3600), Some(3), ops.clone()).expect("invariants hold"),
        1
    );
    ops.extend([Op::Advance(1), Op::Poll, Op::Dispatch { fails: false }]);
    assert_eq!(
        run_case(60, Some(3600), Some(3), ops).expect("invariants hold"),
        2
    );
}
