//! The node's long-running jobs: they drive the shared `Node` (emit
//! events, watch the link, reach the engine) on behalf of the libraries
//! below it, so that `update` and `trust` never depend on `Node` and
//! `Node` never on them beyond their channel types.
//!
//! ```text
//! update.rs     a controller Update/UpdateSigned command: check, answer,
//!               fetch (link or HTTPS), verify, wait for the take, install
//! probation.rs  a freshly installed binary: commit once welcomed, capturing
//!               clean audio and stable; otherwise roll back and restart
//! renew.rs      certificate renewal over the link, and its schedule
//! takes.rs      the controller's take commands: ListTakes, TakeFiles, Receipt
//! retention.rs  deletes received takes as the retention policy says
//! health.rs     health signals: observes levels, device, system, clock
//! configure.rs  a controller's pushed configuration: check, keep, publish
//! ```
//!
//! Dependencies point one way: `daemon`/`dispatch` → `jobs` → `node` →
//! `update::channel`, `trust::channel`; `jobs` → `update`, `trust`.

pub mod configure;
pub mod console;
pub mod health;
pub mod probation;
pub mod renew;
pub mod retention;
pub mod takes;
pub mod update;
