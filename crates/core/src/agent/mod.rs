//! Durable agent runs: the loop, its checkpoints, and the state they hold.

pub mod control;
pub mod driver;
pub mod error;
pub mod outage;
pub mod parts;
mod replies;
pub mod run;
pub mod state;

pub use control::{new_lease_owner, Inbox, RunControl};
pub use driver::{Callbacks, Driver};
pub use error::AgentError;
pub use run::{
    abort, abort_suspended, create, create_leasing, list_run_ids, load_owned, resume, resume_leasing, stream_topic,
    NewRun, RunStore,
};
pub use state::{Decision, RunState, Status};
