//! Group commit of results and claims. Send slots that finish together
//! would queue one by one on SQLite's single writer; instead each result,
//! and each claim of due notices, goes to one writer task per store, which
//! takes those waiting (at most [`MAX_GROUP`]) into one transaction and
//! answers each caller once the COMMIT is done (a slot's result is
//! committed before that slot sends again). A fenced result answers
//! [`Recorded::Fenced`] as before. When a task's SQL fails, the group is
//! rolled back and each of its tasks is written again in a transaction of
//! its own, so only the failing one's caller gets an error (a savepoint
//! per result did the same for two more statements each, on every
//! result); a failed COMMIT fails them all.
//!
//! Only SQLite groups: it has one writer anyway. PostgreSQL writes the
//! results of several slots side by side on pooled connections and merges
//! their WAL flushes itself; one writer task would queue them (the
//! webhook benchmark fell from about 1,360 to 815 notices/s).
//!
//! The task holds a copy of the store without the writer, not the writer's
//! sender: it ends when the last clone of the store is dropped, or at
//! [`Store::close`](super::Store::close).

use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Db, Store, WriteTx};
use crate::ledger::{ClaimedNotice, Outcome, PlannedNotice, Recorded};
use crate::notice::Status;

/// The most results and claims one transaction takes.
const MAX_GROUP: usize = 64;

/// A result to record, owned so it can wait in the writer's queue.
pub(super) struct Work {
    n: ClaimedNotice,
    end: End,
}

enum End {
    Done {
        status: Status,
        attempt_started: DateTime<Utc>,
        finished: DateTime<Utc>,
        next_notice_at: Option<DateTime<Utc>>,
        error: Option<String>,
        next: Option<Box<PlannedNotice>>,
    },
    Retry {
        attempt_started: DateTime<Utc>,
        next_attempt: DateTime<Utc>,
        send_at: DateTime<Utc>,
        error: String,
    },
}

impl Work {
    /// What [`Store::record_done`] writes.
    pub(super) fn done(n: &ClaimedNotice, o: &Outcome<'_>, next: Option<&PlannedNotice>) -> Work {
        Work {
            n: n.clone(),
            end: End::Done {
                status: o.status,
                attempt_started: o.attempt_started,
                finished: o.finished,
                next_notice_at: o.next_notice_at,
                error: o.error.map(str::to_owned),
                next: next.cloned().map(Box::new),
            },
        }
    }

    /// What [`Store::record_retry`] writes.
    pub(super) fn retry(
        n: &ClaimedNotice,
        attempt_started: DateTime<Utc>,
        next_attempt: DateTime<Utc>,
        send_at: DateTime<Utc>,
        error: &str,
    ) -> Work {
        Work {
            n: n.clone(),
            end: End::Retry {
                attempt_started,
                next_attempt,
                send_at,
                error: error.to_owned(),
            },
        }
    }

    /// Runs this result's statements on `tx` (no COMMIT).
    async fn run_on(&self, store: &Store, tx: &mut WriteTx) -> anyhow::Result<Recorded> {
        let n = &self.n;
        match &self.end {
            End::Done {
                status,
                attempt_started,
                finished,
                next_notice_at,
                error,
                next,
            } => {
                let outcome = Outcome {
                    status: *status,
                    attempt_started: *attempt_started,
                    finished: *finished,
                    next_notice_at: *next_notice_at,
                    error: error.as_deref(),
                };
                store.record_done_on(tx, n, &outcome, next.as_deref()).await
            }
            End::Retry {
                attempt_started,
                next_attempt,
                send_at,
                error,
            } => {
                store
                    .record_retry_on(tx, n, *attempt_started, *next_attempt, *send_at, error)
                    .await
            }
        }
    }
}

/// A due-notice claim, owned so it can wait in the writer's queue.
pub(super) struct ClaimArgs {
    pub channel: String,
    pub dry_run: bool,
    pub now: DateTime<Utc>,
    pub limit: i64,
    pub lease: std::time::Duration,
    pub instance: String,
}

/// What the writer writes: a result, or the claim of the next notices
/// (a claim is a write too: on SQLite's one writer it would otherwise
/// wait, in the busy handler's sleeps, for the group before it).
pub(super) enum Task {
    Record(Box<Work>),
    Claim(ClaimArgs),
}

pub(super) enum Answer {
    Recorded(Recorded),
    Claimed(Vec<ClaimedNotice>),
}

impl Task {
    async fn run_on(&self, store: &Store, tx: &mut WriteTx) -> anyhow::Result<Answer> {
        match self {
            Task::Record(work) => work.run_on(store, tx).await.map(Answer::Recorded),
            Task::Claim(claim) => store.claim_on(tx, claim).await.map(Answer::Claimed),
        }
    }

    /// What failed, for an error.
    fn failed(&self) -> String {
        match self {
            Task::Record(work) => format!("failed to record notice {}", work.n.id),
            Task::Claim(claim) => {
                format!("failed to claim due notices of channel {}", claim.channel)
            }
        }
    }
}

struct Job {
    task: Task,
    reply: oneshot::Sender<anyhow::Result<Answer>>,
}

/// The writer a store and its clones share; started at the first result.
#[derive(Clone, Default)]
pub(super) struct GroupWriter {
    jobs: Arc<OnceLock<mpsc::Sender<Job>>>,
    closed: CancellationToken,
}

impl GroupWriter {
    /// Stops the task once it is between transactions.
    pub(super) fn close(&self) {
        self.closed.cancel();
    }
}

impl Store {
    /// Records `work` together with whatever other results are waiting;
    /// returns once it is committed. On PostgreSQL, without a runtime to
    /// run the writer on, or once the writer has stopped, it is recorded
    /// on its own.
    pub(super) async fn record_grouped(&self, work: Work) -> anyhow::Result<Recorded> {
        match self.grouped(Task::Record(Box::new(work))).await? {
            Answer::Recorded(recorded) => Ok(recorded),
            Answer::Claimed(_) => bail!("the store's writer answered a result with a claim"),
        }
    }

    /// Claims due notices in the writer's next transaction (see [`Task`]).
    pub(super) async fn claim_grouped(
        &self,
        claim: ClaimArgs,
    ) -> anyhow::Result<Vec<ClaimedNotice>> {
        match self.grouped(Task::Claim(claim)).await? {
            Answer::Claimed(claimed) => Ok(claimed),
            Answer::Recorded(_) => bail!("the store's writer answered a claim with a result"),
        }
    }

    /// Runs `task` together with whatever else is waiting; returns once it
    /// is committed.
    async fn grouped(&self, task: Task) -> anyhow::Result<Answer> {
        let Some(jobs) = self.group_sender() else {
            return self.alone(&task).await;
        };
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = jobs.send(Job { task, reply }).await {
            return self.alone(&job.task).await;
        }
        answer.await.unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the store's writer stopped before writing this"
            ))
        })
    }

    fn group_sender(&self) -> Option<mpsc::Sender<Job>> {
        if !matches!(self.db, Db::Sqlite(_)) {
            return None;
        }
        let writer = &self.results;
        if let Some(jobs) = writer.jobs.get() {
            return Some(jobs.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let jobs = writer.jobs.get_or_init(|| {
            let (jobs, queue) = mpsc::channel(4 * MAX_GROUP);
            // Not a clone of the writer: the task must not keep it open.
            let store = Store {
                results: GroupWriter::default(),
                ..self.clone()
            };
            runtime.spawn(write_groups(store, queue, writer.closed.clone()));
            jobs
        });
        Some(jobs.clone())
    }

    /// One task in a transaction of its own.
    async fn alone(&self, task: &Task) -> anyhow::Result<Answer> {
        let mut tx = self.begin_write().await?;
        let answer = task.run_on(self, &mut tx).await?;
        tx.commit().await.with_context(|| task.failed())?;
        Ok(answer)
    }
}

/// The writer task: one transaction per group of waiting tasks.
async fn write_groups(store: Store, mut queue: mpsc::Receiver<Job>, closed: CancellationToken) {
    loop {
        let first = tokio::select! {
            biased;
            () = closed.cancelled() => return,
            job = queue.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        let begun = store.begin_write().await;
        // Results that came in while the write lock was awaited join.
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // A store that cannot begin now fails them all at once, instead of
        // each waiting out its own BEGIN in turn; their callers retry.
        let mut tx = match begun {
            Ok(tx) => tx,
            Err(e) => {
                fail_all(group, &e);
                continue;
            }
        };
        let size = group.len();
        match write_group(&store, &mut tx, &group).await {
            Ok(results) => match tx.commit().await {
                Ok(()) => {
                    tracing::trace!(results = size, "results committed together");
                    for (job, answer) in group.into_iter().zip(results) {
                        let _ = job.reply.send(Ok(answer));
                    }
                }
                Err(e) => fail_all(group, &e),
            },
            Err(e) => {
                // Dropping the transaction closes its connection, which
                // rolls it back: none of the group is written.
                drop(tx);
                tracing::debug!(
                    error = format!("{e:#}"),
                    results = size,
                    "a result of a group failed; each is recorded on its own"
                );
                for job in group {
                    let result = store.alone(&job.task).await;
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

/// Runs each job of `group` on `tx`: the answer of each, or the first
/// error (the transaction is then to be rolled back).
async fn write_group(
    store: &Store,
    tx: &mut WriteTx,
    group: &[Job],
) -> anyhow::Result<Vec<Answer>> {
    let mut answers = Vec::with_capacity(group.len());
    for job in group {
        answers.push(job.task.run_on(store, tx).await?);
    }
    Ok(answers)
}

/// Answers every job of a group whose transaction failed: none of them
/// is recorded.
fn fail_all(group: Vec<Job>, e: &anyhow::Error) {
    for job in group {
        let error = anyhow::anyhow!("{e:#}").context(job.task.failed());
        let _ = job.reply.send(Err(error));
    }
}
