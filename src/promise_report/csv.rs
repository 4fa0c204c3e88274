//! The report as CSV (RFC 4180) for spreadsheets.

use super::{LONGEST_OPEN, Report, Spread};
use crate::clock::rfc3339;
use crate::promise::BrokenBy;

/// The report as RFC 4180 CSV: a header row of dotted names
/// (`promises.kept`), one row per group and a `total` row. The columns are
/// the same whatever the data: every broken reason, every notice number
/// and candidate the report holds, [`LONGEST_OPEN`] open waits.
pub fn csv(report: &Report) -> anyhow::Result<String> {
    let total = &report.total;
    let mut header: Vec<String> = [
        "row",
        "key",
        "waits_started",
        "waits_ended",
        "waits_open",
        "waits_crossed",
        "wait_seconds.p50",
        "wait_seconds.p90",
        "wait_seconds.max",
        "business_wait_seconds.p50",
        "business_wait_seconds.p90",
        "business_wait_seconds.max",
        "notices_sent",
    ]
    .map(str::to_owned)
    .to_vec();
    // The total holds every notice number, reason and candidate a group has.
    let numbers: Vec<&u32> = total.notices_by_number.keys().collect();
    header.extend(numbers.iter().map(|n| format!("notices_by_number.{n}")));
    header.extend(
        [
            "made",
            "kept",
            "superseded",
            "broken",
            "pending",
            "kept_rate",
        ]
        .map(|f| format!("promises.{f}")),
    );
    let mut reasons: Vec<String> = BrokenBy::ALL.map(|r| r.as_str().to_owned()).to_vec();
    reasons.extend(
        total
            .promises
            .broken_by_reason
            .keys()
            .filter(|r| BrokenBy::parse(r).is_none())
            .cloned(),
    );
    header.extend(
        reasons
            .iter()
            .map(|r| format!("promises.broken_by_reason.{r}")),
    );
    header.push("exhausted".into());
    for i in 1..=LONGEST_OPEN {
        for f in ["ticket_id", "ticket_number", "since", "waited_seconds"] {
            header.push(format!("longest_open.{i}.{f}"));
        }
    }
    let candidates: Vec<&String> = total
        .ended_within
        .iter()
        .flatten()
        .map(|(label, _)| label)
        .collect();
    header.extend(candidates.iter().map(|c| format!("ended_within.{c}")));

    // RFC 4180 ends records with CRLF; the crate's default is LF.
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    csv.write_record(&header)?;
    let groups = report.groups.iter().map(|g| ("group", g));
    for (row, g) in groups.chain(std::iter::once(("total", total))) {
        let spread = |s: Option<Spread>| -> [String; 3] {
            s.map_or_else(Default::default, |s| {
                [s.p50.to_string(), s.p90.to_string(), s.max.to_string()]
            })
        };
        let mut cells: Vec<String> = vec![
            row.to_owned(),
            g.key.clone().unwrap_or_default(),
            g.waits_started.to_string(),
            g.waits_ended.to_string(),
            g.waits_open.to_string(),
            g.waits_crossed.to_string(),
        ];
        cells.extend(spread(g.wait_seconds));
        cells.extend(spread(g.business_wait_seconds));
        cells.push(g.notices_sent.to_string());
        cells.extend(numbers.iter().map(|n| {
            g.notices_by_number
                .get(*n)
                .copied()
                .unwrap_or(0)
                .to_string()
        }));
        let p = &g.promises;
        cells.extend([p.made, p.kept, p.superseded, p.broken, p.pending].map(|n| n.to_string()));
        cells.push(p.kept_rate.map(|r| r.to_string()).unwrap_or_default());
        cells.extend(
            reasons
                .iter()
                .map(|r| p.broken_by_reason.get(r).copied().unwrap_or(0).to_string()),
        );
        cells.push(g.exhausted.to_string());
        for i in 0..LONGEST_OPEN {
            match g.longest_open.get(i) {
                Some(w) => cells.extend([
                    w.ticket_id.clone(),
                    w.ticket_number.clone().unwrap_or_default(),
                    rfc3339(w.since),
                    w.waited_seconds.to_string(),
                ]),
                None => cells.extend(std::iter::repeat_n(String::new(), 4)),
            }
        }
        cells.extend(candidates.iter().map(|c| {
            let shares = g.ended_within.iter().flatten();
            shares
                .filter(|(label, _)| label == *c)
                .map(|(_, share)| share.to_string())
                .next()
                .unwrap_or_default()
        }));
        csv.write_record(&cells)?;
    }
    let bytes = csv
        .into_inner()
        .map_err(|e| anyhow::anyhow!("failed to write the CSV: {e}"))?;
    Ok(String::from_utf8(bytes)?)
}
