//! Durable agent runs: the loop, its checkpoints, and the state they hold.

pub mod control;
pub mod driver;
pub mod durable;
pub mod error;
pub mod outage;
pub mod parts;
pub mod run;
pub mod state;

pub use control::{new_lease_owner, Inbox, RunControl};
pub use driver::{Callbacks, Driver};
pub use durable::{Agent, AgentConfig, StartRun};
pub use error::AgentError;
pub use run::{abort, abort_suspended, create, load_owned, resume, NewRun, RunStore};
pub use state::{Decision, RunState, Status};
