//! `nightcrier demo`: the newcomer's first command. Simulated clusters, embedded SQLite and the
//! built-in demo agent, all in one process, with nothing configured.
//!
//! This module owns the demo's set-up; it must not be used by production paths.

pub mod agent;
