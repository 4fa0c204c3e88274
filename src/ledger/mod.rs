//! The ledger's vocabulary: the types planning and delivery exchange with a
//! store, and the two traits a store offers them. It depends on the ticket
//! and the notice identity only, never on config, source, channels,
//! templates or a database, so planning, dispatch and reports can depend on
//! it without depending on a backend (and the store on nothing above it).

mod delivery;
mod plan;
mod rows;
mod traits;

pub use delivery::{ClaimedNotice, Outcome, Recorded};
pub use plan::{
    Cancel, ChangedTickets, EndedWaits, NextNotice, Plan, PlannedNotice, PollEnd, SeriesState,
    SeriesWrite, Swept, WaitEnd, WaitWrite,
};
pub use rows::{
    NoticeFilter, NoticePage, NoticeRow, OverviewCounts, PromiseState, ReportWait, Suppression,
    Wait,
};
pub use traits::{DeliveryLedger, PlanLedger};

pub use crate::notice::{SeriesKey, Status};
