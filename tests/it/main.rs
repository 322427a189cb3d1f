//! The integration tests: one binary, so the crate and its dependencies are linked once for
//! all of them. One module per area; every module starts openkb through [`harness`] (a
//! cleared environment, a temp HOME, the built binary on temp KBs).

mod harness;
/// The test PostgreSQL server (one for this binary) of the team-mode tests.
#[path = "../support/pg_server.rs"]
mod pg_server;

mod add;
mod cli;
mod cli_ux;
mod compile;
mod crash;
mod doctor;
mod export;
mod fsx;
mod hooks;
mod hostile;
mod hostile_names;
mod interop;
mod lint;
mod locks;
mod migrate;
mod netfs;
mod output;
mod reliability_confinement;
mod reliability_faults;
mod reliability_input;
mod reliability_load;
mod reliability_modes;
mod remove;
mod schema;
mod sessions;
mod team;
mod team_lock;
mod team_move;
mod team_tls;
mod watch;
