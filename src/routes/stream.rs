//! `GET /api/v1/stream`: server-sent events that end after `count` events, or cleanly (a proper
//! end of the response, not a reset) when the instance stops.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, stream::BoxStream};
use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Query, payload::EventStream};

use super::Tag;
use crate::{error::ApiError, state::AppState};

/// One event of the stream.
#[derive(Debug, Object)]
pub struct Tick {
    /// 0, 1, 2, ...
    pub seq: u32,
    /// Milliseconds since the stream started.
    pub elapsed_ms: u64,
}

/// The stream resource.
pub struct StreamApi;

#[OpenApi(tag = "Tag::Stream")]
impl StreamApi {
    /// A stream of server-sent events
    ///
    /// `count` events (1 to 1000, default 10), one every `interval_ms` (10 to 60000, default
    /// 1000). The stream ends early, cleanly, when the instance shuts down or after
    /// `POEM_API_STREAM_MAX_DURATION`; beyond `POEM_API_MAX_STREAMS` open streams, 503.
    #[oai(path = "/api/v1/stream", method = "get", operation_id = "stream")]
    async fn stream(
        &self,
        #[oai(
            default = "default_count",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        count: Query<u32>,
        #[oai(
            default = "default_interval",
            validator(minimum(value = "10"), maximum(value = "60000"))
        )]
        interval_ms: Query<u64>,
        state: Data<&Arc<AppState>>,
    ) -> Result<EventStream<BoxStream<'static, Tick>>, ApiError> {
        // Held by the stream until it ends: open streams are bounded, whatever the in-flight
        // limit (which lets the request go once the response head is out).
        let permit = state
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyStreams)?;
        let count = count.0;
        let ticker = tokio::time::interval(Duration::from_millis(interval_ms.0));
        let started = tokio::time::Instant::now();
        let end = started + state.config.stream_max_duration;
        let ticks = futures_util::stream::unfold(
            (0u32, ticker, state.lifecycle.stopping_token(), permit),
            move |(seq, mut ticker, stopping, permit)| async move {
                if seq >= count {
                    return None;
                }
                tokio::select! {
                    _ = ticker.tick() => {
                        let tick = Tick { seq, elapsed_ms: started.elapsed().as_millis() as u64 };
                        Some((tick, (seq + 1, ticker, stopping, permit)))
                    }
                    _ = stopping.cancelled() => None,
                    _ = tokio::time::sleep_until(end) => None,
                }
            },
        );
        Ok(EventStream::new(ticks.boxed()))
    }
}

fn default_count() -> u32 {
    10
}

fn default_interval() -> u64 {
    1000
}
