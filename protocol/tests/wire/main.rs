//! Wire tests: golden byte vectors (both directions) and property tests.

#![allow(clippy::unwrap_used)]

mod golden;
mod roundtrip;
