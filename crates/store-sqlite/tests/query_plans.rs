//! Each statement that takes a set of ticket ids finds its rows by ticket
//! id: one that reads a whole table instead makes a poll quadratic in the
//! ledger (a poll that planned 1M tickets took 479 s when the series
//! lookup took `series_active`). SQLite without statistics, as a daemon's
//! ledger is. The statements are read from the offline data the build
//! checks them with, so this sees exactly the text the store runs.

use sqlx::{Connection, Row, SqliteConnection};

/// Every statement of the crate, from `.sqlx/`.
fn statements() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".sqlx");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let data: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        if let Some(query) = data["query"].as_str() {
            out.push(query.to_owned());
        }
    }
    out
}

/// SQLite's plan of `sql`, one line per step: a JSON array of two ids
/// for each parameter inside `json_each(…)`, 0 for every other one.
async fn plan_of(conn: &mut SqliteConnection, sql: &str) -> Vec<String> {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(explain));
    for n in 1.. {
        let parameter = format!("?{n}");
        if !sql.contains(&parameter) {
            break;
        }
        query = if sql.contains(&format!("json_each({parameter})")) {
            query.bind(r#"["T1","T2"]"#)
        } else {
            query.bind(0_i64)
        };
    }
    let rows = query
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .map(|r| r.try_get::<String, _>(3).unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn statements_on_a_set_of_tickets_find_rows_by_ticket_id() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("ledger.db").display()
    );
    let mut conn = SqliteConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    interim_store_sqlite::MIGRATOR
        .run(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let on_sets: Vec<String> = statements()
        .into_iter()
        .filter(|sql| sql.contains("json_each"))
        .collect();
    assert!(on_sets.len() >= 5, "{on_sets:#?}");
    for sql in &on_sets {
        let plan = plan_of(&mut conn, sql).await;
        let shown = plan.join("\n");
        for step in &plan {
            assert!(
                !step.starts_with("SCAN ") || step.starts_with("SCAN json_each"),
                "a statement reads a whole table:\n{sql}\n{shown}"
            );
            assert!(!step.contains("series_active"), "{sql}\n{shown}");
        }
    }
}
