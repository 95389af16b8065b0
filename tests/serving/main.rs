//! The serving core against the real binary (issue 9's contract): connection phases and their
//! deadlines, logging that never blocks, bounded work per request, probes that stand apart,
//! supervision of the listeners, hand-made requests nginx answers correctly, and HTTP/2 by
//! prior knowledge with the same protections.
//!
//! `POEM_API_TEST_BIN=/path/to/poem-api cargo test --test serving` runs them against another
//! build of the server.

mod bounded;
mod connections;
mod gaps;
mod http2;
mod logging;
mod probes;
mod supervision;
mod support;
mod tracing;
