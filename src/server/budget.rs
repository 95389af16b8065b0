//! The most memory the server can hold for the limits it is configured with, whatever the
//! clients do: the figure the Kubernetes memory limits are derived from (tests/k8s checks each
//! overlay against it) and that `reliability/run` measures against.

use crate::config::Config;

use super::{ADMIN_CONNECTIONS, read_buffer_limit};

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

/// The worst case of memory held by the process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// One API connection at its worst: a full read buffer, a body at the limit being
    /// collected (a growing buffer may hold twice its content while it moves), the write
    /// buffer and the fixed part.
    pub per_connection: u64,
    /// Memory of an instance without connections ([`BASE`]).
    pub base: u64,
    /// `base + (max_connections + admin connections) × per_connection`.
    pub total: u64,
}

impl MemoryBudget {
    /// The budget for `config`'s limits.
    pub fn for_config(config: &Config) -> Self {
        let per_connection = read_buffer_limit(config.header_limit) as u64
            + 2 * config.body_limit as u64
            + WRITE_BUFFER
            + PER_CONNECTION_FIXED;
        let connections = u64::from(config.max_connections) + u64::from(ADMIN_CONNECTIONS);
        Self {
            per_connection,
            base: BASE,
            total: BASE + connections * per_connection,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limits_budget_about_two_hundred_and_fifty_mib() {
        let config = Config::from_args(["poem-api"]).unwrap();
        let budget = MemoryBudget::for_config(&config);
        // 32 KiB head + 2 × 64 KiB body + 64 KiB write + 48 KiB fixed.
        assert_eq!(budget.per_connection, 272 * KIB);
        assert_eq!(budget.total, BASE + (1024 + 32) * 272 * KIB);
    }
}
