//! End-to-end tests: the real agent binary against the reference controller,
//! real TLS with generated certificates, loopback only.

#![allow(clippy::unwrap_used)]

mod admission;
mod ansible;
mod bridge;
mod bridge_jobs;
mod cli;
mod commands;
mod concurrent;
mod configure;
mod console;
mod damage;
mod diskfull;
mod durability;
mod enroll;
mod events;
mod exit_codes;
mod frames;
mod handshake;
mod health;
mod inventory;
mod limits;
mod listen;
mod local_security;
mod packaging;
mod realtime;
mod record;
mod refusals;
mod renewal;
mod resume;
mod systemd;
mod takes;
mod transfer;
mod trust;
mod update;
mod update_cli;
mod update_signed;
mod update_take;
mod update_url;

use std::time::Duration;

/// Generous bound for anything that involves process start-up.
pub const T: Duration = Duration::from_secs(20);
