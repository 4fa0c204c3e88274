//! The plans of a poll in progress, held until the poll is complete: a
//! poll that fails half way (an error on page 7, too many rows, a reader
//! that dies) must not have planned, cancelled or sent anything. Small
//! polls stay in memory; a large one (the first poll of a big helpdesk)
//! spills to an anonymous temporary file, so memory stays bounded.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};

use anyhow::Context;

use crate::planner::Plan;

/// Plans kept in memory up to this many bytes (estimated) before the
/// stage moves to a file.
const MEMORY_BUDGET: usize = 32 << 20;

#[derive(Default)]
pub struct PlanStage {
    memory: Vec<Plan>,
    bytes: usize,
    file: Option<BufWriter<File>>,
    staged: usize,
}

fn estimate(plan: &Plan) -> usize {
    plan.upserts
        .iter()
        .map(|n| n.ticket_json.len() + 256)
        .sum::<usize>()
        + (plan.cancels.len() + plan.series.len() + plan.deleted_series.len()) * 160
}

impl PlanStage {
    /// Keeps a plan for later (an empty one is dropped).
    pub fn push(&mut self, plan: Plan) -> anyhow::Result<()> {
        if plan.is_empty() {
            return Ok(());
        }
        self.staged += 1;
        self.bytes = self.bytes.saturating_add(estimate(&plan));
        if self.file.is_none() && self.bytes <= MEMORY_BUDGET {
            self.memory.push(plan);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = tempfile::tempfile()
                    .context("failed to create a temporary file for a large poll")?;
                self.file.insert(BufWriter::new(file))
            }
        };
        for plan in self.memory.drain(..).chain(std::iter::once(plan)) {
            serde_json::to_writer(&mut *file, &plan)
                .context("failed to stage a plan in the temporary file")?;
            file.write_all(b"\n")
                .context("failed to stage a plan in the temporary file")?;
        }
        Ok(())
    }

    /// How many non-empty plans were staged.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.staged
    }

    /// The staged plans, in the order they were staged.
    pub fn into_plans(
        self,
    ) -> anyhow::Result<Box<dyn Iterator<Item = anyhow::Result<Plan>> + Send>> {
        let Some(file) = self.file else {
            return Ok(Box::new(self.memory.into_iter().map(Ok)));
        };
        let mut file = file
            .into_inner()
            .map_err(|e| e.into_error())
            .context("failed to write the staged plans")?;
        file.rewind().context("failed to read the staged plans")?;
        Ok(Box::new(BufReader::new(file).lines().map(|line| {
            let line = line.context("failed to read the staged plans")?;
            serde_json::from_str(&line).context("failed to read a staged plan")
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::SeriesKey;
    use crate::planner::Cancel;

    fn plan(n: usize) -> Plan {
        Plan {
            cancels: (0..n)
                .map(|i| Cancel {
                    id: format!("n{i}"),
                    key: SeriesKey::new("t", "p", chrono::DateTime::UNIX_EPOCH),
                    reason: "x".into(),
                })
                .collect(),
            ..Plan::default()
        }
    }

    #[test]
    fn a_large_stage_spills_to_a_file_and_reads_back_in_order() {
        let mut stage = PlanStage::default();
        let chunks = MEMORY_BUDGET / (160 * 1000) + 3;
        for _ in 0..chunks {
            stage.push(plan(1000)).unwrap_or_else(|e| panic!("{e:#}"));
        }
        stage
            .push(Plan::default())
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(stage.file.is_some(), "spilled");
        assert_eq!(stage.len(), chunks);
        let back: Vec<Plan> = stage
            .into_plans()
            .unwrap_or_else(|e| panic!("{e:#}"))
            .collect::<anyhow::Result<_>>()
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(back.len(), chunks);
        assert!(back.iter().all(|p| p == &plan(1000)));
    }
}
