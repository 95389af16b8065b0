//! The most memory the server can hold for the limits it is configured with, whatever the
//! clients do: the figure the Kubernetes memory limits are derived from (tests/k8s checks each
//! overlay against it) and that `reliability/run` measures against.

use crate::config::Config;

use super::{
    ADMIN_CONNECTIONS, HTTP2_MAX_FRAME, HTTP2_SEND_BUFFER, HTTP2_WINDOW, read_buffer_limit,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Resident memory of an instance with no connection: runtime threads and their stacks, the
/// OpenAPI document and Swagger UI (served as shared bytes, never copied per response), the
/// metric families and the log queue. Measured at about 10 MiB idle (README, "Memory").
pub const BASE: u64 = 24 * MIB;

/// What one connection may hold besides its buffers: its task, the request's futures and the
/// parsed request, hyper's connection state, and the response head and a small JSON body
/// (the largest, echo's, is below 16 KiB: 1024 characters of message and 16 tags of 64).
pub const PER_CONNECTION_FIXED: u64 = 48 * KIB;

/// hyper's write buffer holds the response head and the body frames not yet accepted by the
/// socket; the large bodies (Swagger UI, the OpenAPI document) are shared, not copied.
pub const WRITE_BUFFER: u64 = 64 * KIB;

/// An HTTP/2 connection's own state besides its streams: request body data received but not
/// yet read (at most the connection window), h2's read buffer (one frame), its write buffer
/// (16 KiB; larger DATA frames are sent from the body's own bytes, not copied) and the two
/// HPACK tables (4 KiB each).
pub const HTTP2_CONNECTION: u64 =
    HTTP2_WINDOW as u64 + 1 + HTTP2_MAX_FRAME as u64 + 16 * KIB + 8 * KIB;

/// One finished span held for export at its largest: its attributes are bounded (a path of at
/// most 1024 bytes, a user agent of at most 256, the rest short). Counted whether or not traces
/// are exported: an `OTEL_*` variable the operator injects can turn them on.
pub const HELD_SPAN: u64 = 3 * KIB;

/// The worst case of memory held by the process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// One connection slot at its worst. Over HTTP/1.1: a full read buffer, a body at the limit
    /// being collected (a growing buffer may hold twice its content while it moves), the write
    /// buffer and the fixed part. Over HTTP/2 a slot is a stream (a connection's first stream
    /// uses the connection's slot, every other one takes a slot of its own): its header list,
    /// its body, the data h2 queues for it and the fixed part, plus, for the first,
    /// [`HTTP2_CONNECTION`]. With HTTP/2 on, the larger of the two.
    pub per_connection: u64,
    /// Memory of an instance without connections: [`BASE`], plus `OTEL_BSP_MAX_QUEUE_SIZE` ×
    /// [`HELD_SPAN`] for the spans held for export.
    pub base: u64,
    /// `base + (max_connections + admin connections) × per_connection`.
    pub total: u64,
}

impl MemoryBudget {
    /// The budget for `config`'s limits.
    pub fn for_config(config: &Config) -> Self {
        let body = 2 * config.body_limit as u64;
        let http1 = read_buffer_limit(config.header_limit) as u64
            + body
            + WRITE_BUFFER
            + PER_CONNECTION_FIXED;
        let http2 = config.header_limit as u64
            + body
            + HTTP2_SEND_BUFFER as u64
            + PER_CONNECTION_FIXED
            + HTTP2_CONNECTION;
        let per_connection = if config.http2 {
            http1.max(http2)
        } else {
            http1
        };
        let connections = u64::from(config.max_connections) + u64::from(ADMIN_CONNECTIONS);
        let base = BASE + u64::from(config.otel_queue_size) * HELD_SPAN;
        Self {
            per_connection,
            base,
            total: base + connections * per_connection,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limits_budget_about_three_hundred_and_sixty_mib() {
        let config = Config::from_args(["poem-api"]).unwrap();
        let budget = MemoryBudget::for_config(&config);
        // HTTP/2: 32 KiB header list + 2 × 64 KiB body + 16 KiB send queue + 48 KiB fixed
        // + 104 KiB of connection state (64 KiB window, 16 KiB frame, 16 KiB write, 8 KiB HPACK).
        assert_eq!(budget.per_connection, 328 * KIB);
        // 24 MiB + 2048 spans × 3 KiB.
        assert_eq!(budget.base, 30 * MIB);
        assert_eq!(budget.total, 30 * MIB + (1024 + 32) * 328 * KIB);
    }

    #[test]
    fn without_http2_a_slot_is_an_http1_connection() {
        let config = Config::from_args(["poem-api", "--http2=false"]).unwrap();
        let budget = MemoryBudget::for_config(&config);
        // 32 KiB head + 2 × 64 KiB body + 64 KiB write + 48 KiB fixed.
        assert_eq!(budget.per_connection, 272 * KIB);
        assert_eq!(budget.total, 30 * MIB + (1024 + 32) * 272 * KIB);
    }
}
