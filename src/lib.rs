//! interim: keeps waiting customers informed.
//!
//! The modules follow the data flow: `source` polls tickets, `planner`
//! turns them and the `policy` rules into planned notices in the `store`
//! (the ledger, whose vocabulary is `ledger`), `dispatch` sends due notices
//! through `channels`, rendered by `templates`; `daemon` runs the loop,
//! `cli` is the command line (its reports and the demo inside it).
//! `config` validates the settings and `setup` loads them with the
//! templates they name.

pub mod calendar;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub mod http;
pub mod ledger;
pub mod logging;
pub mod net;
pub mod notice;
pub mod planner;
pub mod policy;
pub mod private_files;
pub mod promise;
pub mod promise_report;
pub mod retry;
pub mod row_counts;
pub mod schedule;
pub mod secret;
pub mod setup;
pub mod source;
pub mod store;
pub mod suppress;
pub mod systemd;
pub mod telemetry;
pub mod templates;
pub mod ticket;
pub mod ticket_ids;
