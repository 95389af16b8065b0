//! The only writer of stdout: a thread fed by a bounded queue of formatted lines. A thread that
//! logs appends its line under a lock held for a copy, never for I/O, and when the queue is full
//! the line is dropped and counted instead of waited for: a stalled log pipe (a container
//! runtime that stops reading) must not stop serving, probes or signal handling.
//!
//! tracing-appender's `NonBlocking` is not used: it bounds lines but not bytes, writes each line
//! with its own `write` call (to a line-buffered `Stdout`, one write(2) per line), and reports
//! drops only through a counter, never in the log itself.

use std::{
    io::{self, Write},
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::fmt::MakeWriter;

/// No line written is longer than this, its newline included.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// After the first line arrives at an idle writer, how long it waits for more before writing:
/// at tens of thousands of lines a second, one write(2) of a few hundred lines every 5 ms,
/// instead of a write and a wake-up per line. A line reaches stdout that much later at most.
const LINGER: Duration = Duration::from_millis(5);

/// Appended where a line or a field was cut to fit [`MAX_LINE_BYTES`].
pub const TRUNCATED_MARKER: &[u8] = b"...[truncated]";

/// How much the queue holds before lines are dropped; whichever bound is reached first counts.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Lines waiting to be written.
    pub max_lines: usize,
    /// Bytes waiting to be written.
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    /// 4096 lines or 1 MiB: about 4000 access-log lines, a tenth of a second at full load, or
    /// 64 lines of the largest size. The memory is taken only as lines arrive; at most two such
    /// buffers exist (one filling, one being written).
    fn default() -> Self {
        Self {
            max_lines: 4096,
            max_bytes: 1024 * 1024,
        }
    }
}

/// Writes the line that reports `dropped` lost lines into the buffer, newline included.
pub type SummaryFormat = fn(&mut Vec<u8>, u64);

/// The sending side: cheap to clone, shared by every thread that logs.
#[derive(Debug, Clone)]
pub struct LogQueue {
    shared: Arc<Shared>,
}

/// Flushes the queue when dropped, for at most the time given to [`spawn`].
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard {
    shared: Arc<Shared>,
    flush_timeout: Duration,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The writer waits on it for lines or for the guard's drop.
    wake: Condvar,
    /// The guard waits on it for the writer to finish.
    finished: Condvar,
    limits: QueueLimits,
    dropped_total: Counter,
}

/// What the writer thread is doing, so that a push wakes it (a futex call) only when needed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// Waiting for a first line.
    #[default]
    Idle,
    /// Gathering lines for [`LINGER`]; woken early when the queue is half full.
    Lingering,
    /// Writing, or already woken.
    Busy,
}

#[derive(Debug, Default)]
struct State {
    /// Complete lines, each ending in `\n`, waiting for the writer.
    pending: Vec<u8>,
    lines: usize,
    /// Lines lost since the last summary line.
    dropped: u64,
    writer: WriterState,
    closing: bool,
    finished: bool,
}

/// Starts the writer thread on `sink`. Lines pushed to the queue are written in batches of
/// everything queued, one `write_all` and one `flush` per batch; drops are added to
/// `dropped_total` and reported by one line made by `summary` when the writer catches up.
pub fn spawn(
    sink: impl Write + Send + 'static,
    limits: QueueLimits,
    dropped_total: Counter,
    summary: SummaryFormat,
    flush_timeout: Duration,
) -> io::Result<(LogQueue, LogGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        finished: Condvar::new(),
        limits,
        dropped_total,
    });
    let writer = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("poem-api-log".into())
        .spawn(move || write_batches(&writer, sink, summary))?;
    Ok((
        LogQueue {
            shared: Arc::clone(&shared),
        },
        LogGuard {
            shared,
            flush_timeout,
        },
    ))
}

impl LogQueue {
    /// Queues one line (a trailing newline is added if missing), cut to [`MAX_LINE_BYTES`] with
    /// [`TRUNCATED_MARKER`] at a character boundary. Never waits for I/O: when the queue is full
    /// the line is dropped and counted.
    pub fn push(&self, line: &[u8]) {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let (body, cut) = if body.len() < MAX_LINE_BYTES {
            (body, false)
        } else {
            let end = char_floor(body, MAX_LINE_BYTES - 1 - TRUNCATED_MARKER.len());
            (&body[..end], true)
        };
        let len = body.len() + if cut { TRUNCATED_MARKER.len() } else { 0 } + 1;
        let shared = &*self.shared;
        let mut state = shared.lock();
        if state.lines >= shared.limits.max_lines
            || state.pending.len() + len > shared.limits.max_bytes
        {
            state.dropped += 1;
            drop(state);
            shared.dropped_total.inc();
            return;
        }
        state.pending.extend_from_slice(body);
        if cut {
            state.pending.extend_from_slice(TRUNCATED_MARKER);
        }
        state.pending.push(b'\n');
        state.lines += 1;
        let wake = match state.writer {
            WriterState::Idle => true,
            WriterState::Lingering => shared.half_full(&state),
            WriterState::Busy => false,
        };
        if wake {
            state.writer = WriterState::Busy;
            shared.wake.notify_one();
        }
    }
}

/// One write per event: the fmt layer formats a whole line and hands it over in one `write_all`.
impl<'a> MakeWriter<'a> for LogQueue {
    type Writer = &'a LogQueue;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Write for &LogQueue {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        state.closing = true;
        shared.wake.notify_one();
        // Bounded: a writer blocked on a full pipe must not hold the exit. What it has not
        // written by then is lost with the process.
        let deadline = Instant::now() + self.flush_timeout;
        while !state.finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = shared
                .finished
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Shared {
    /// A panic while the lock is held (none is possible in the code under it) must not stop logging.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn half_full(&self, state: &State) -> bool {
        state.lines >= self.limits.max_lines / 2 || state.pending.len() >= self.limits.max_bytes / 2
    }

    fn wait_on_wake<'a>(
        &self,
        state: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        match timeout {
            None => self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
            Some(timeout) => {
                self.wake
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        }
    }
}

/// The writer thread: wait for a line, gather more for [`LINGER`], swap the queued lines out,
/// write them (with the summary line when some were dropped) in one call, repeat; after the
/// guard's drop, exit once the queue is empty.
fn write_batches(shared: &Shared, mut sink: impl Write, summary: SummaryFormat) {
    let mut batch = Vec::new();
    loop {
        let (lines, dropped, closing) = {
            let mut state = shared.lock();
            while state.lines == 0 && state.dropped == 0 && !state.closing {
                state.writer = WriterState::Idle;
                state = shared.wait_on_wake(state, None);
            }
            state.writer = WriterState::Lingering;
            let deadline = Instant::now() + LINGER;
            while !state.closing && !shared.half_full(&state) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = shared.wait_on_wake(state, Some(left));
            }
            state.writer = WriterState::Busy;
            std::mem::swap(&mut state.pending, &mut batch);
            (
                std::mem::take(&mut state.lines),
                std::mem::take(&mut state.dropped),
                state.closing,
            )
        };
        // The dropped lines came after the queued ones (the queue was full), so the summary
        // follows them.
        if dropped > 0 {
            summary(&mut batch, dropped);
        }
        if !batch.is_empty() && sink.write_all(&batch).and_then(|()| sink.flush()).is_err() {
            // stdout is gone (EPIPE, EBADF): nothing can report it but the counter. The next
            // summary, if one ever gets through, includes these lines.
            let lost = lines as u64;
            shared.lock().dropped += lost;
            shared.dropped_total.inc_by(lost);
        }
        batch.clear();
        // The buffers keep their capacity, so that a busy log does not allocate; a burst of
        // large lines should not pin its memory for the rest of the process, though.
        if batch.capacity() > shared.limits.max_bytes {
            batch.shrink_to(shared.limits.max_bytes);
        }
        if closing {
            let mut state = shared.lock();
            if state.lines == 0 {
                state.finished = true;
                shared.finished.notify_all();
                return;
            }
        }
    }
}

/// The largest `n <= max` that does not split a UTF-8 sequence of `bytes`.
pub(crate) fn char_floor(bytes: &[u8], max: usize) -> usize {
    if max >= bytes.len() {
        return bytes.len();
    }
    let mut n = max;
    // A continuation byte is 0b10xx_xxxx; at most three precede a character's end.
    while n > 0 && bytes[n] & 0xC0 == 0x80 {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose writes block while the gate is closed, recording each write call apart so a
    /// test can see the batches.
    #[derive(Clone, Default)]
    struct StallSink {
        inner: Arc<(Mutex<SinkState>, Condvar)>,
    }

    #[derive(Default)]
    struct SinkState {
        open: bool,
        /// Write calls that have started (and may be blocked).
        entered: usize,
        writes: Vec<Vec<u8>>,
    }

    impl StallSink {
        fn closed() -> Self {
            Self::default()
        }

        fn open(&self) {
            self.inner.0.lock().unwrap().open = true;
            self.inner.1.notify_all();
        }

        fn wait_until(&self, what: impl Fn(&SinkState) -> bool) {
            let (lock, cond) = &*self.inner;
            let state = lock.lock().unwrap();
            drop(cond.wait_while(state, |s| !what(s)).unwrap());
        }

        fn writes(&self) -> Vec<String> {
            let state = self.inner.0.lock().unwrap();
            state
                .writes
                .iter()
                .map(|w| String::from_utf8(w.clone()).unwrap())
                .collect()
        }
    }

    impl Write for StallSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cond) = &*self.inner;
            let mut state = lock.lock().unwrap();
            state.entered += 1;
            cond.notify_all();
            let mut state = cond.wait_while(state, |s| !s.open).unwrap();
            state.writes.push(buf.to_vec());
            cond.notify_all();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn summary(out: &mut Vec<u8>, dropped: u64) {
        out.extend_from_slice(format!("dropped {dropped}\n").as_bytes());
    }

    fn start(sink: &StallSink, limits: QueueLimits) -> (LogQueue, LogGuard, Counter) {
        let counter = Counter::default();
        let (queue, guard) = spawn(
            sink.clone(),
            limits,
            counter.clone(),
            summary,
            Duration::from_secs(5),
        )
        .unwrap();
        (queue, guard, counter)
    }

    /// Blocks the writer inside the write of a first line, so that later pushes queue up.
    fn stall_writer(sink: &StallSink, queue: &LogQueue) {
        queue.push(b"first\n");
        sink.wait_until(|s| s.entered == 1);
    }

    #[test]
    fn lines_queued_while_the_writer_is_busy_go_out_in_one_write() {
        // Arrange
        let sink = StallSink::closed();
        let (queue, guard, counter) = start(&sink, QueueLimits::default());
        stall_writer(&sink, &queue);

        // Act
        for i in 0..10 {
            queue.push(format!("line {i}\n").as_bytes());
        }
        sink.open();
        drop(guard);

        // Assert
        let writes = sink.writes();
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert_eq!(writes[0], "first\n");
        let expected: String = (0..10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(writes[1], expected);
        assert_eq!(counter.get(), 0);
    }

    #[test]
    fn a_full_queue_drops_lines_counts_them_and_reports_them_once_the_writer_recovers() {
        // Arrange
        let sink = StallSink::closed();
        let limits = QueueLimits {
            max_lines: 4,
            max_bytes: 1024,
        };
        let (queue, guard, counter) = start(&sink, limits);
        stall_writer(&sink, &queue);

        // Act: the writer is blocked, so these pushes must return without it.
        for i in 0..10 {
            queue.push(format!("line {i}").as_bytes());
        }
        let dropped_while_stalled = counter.get();
        sink.open();
        sink.wait_until(|s| s.writes.len() == 2);
        queue.push(b"after\n");
        drop(guard);

        // Assert
        assert_eq!(dropped_while_stalled, 6);
        let writes = sink.writes();
        assert_eq!(
            writes,
            [
                "first\n",
                "line 0\nline 1\nline 2\nline 3\ndropped 6\n",
                "after\n"
            ]
        );
        assert_eq!(counter.get(), 6);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_as_well_as_lines() {
        // Arrange
        let sink = StallSink::closed();
        let limits = QueueLimits {
            max_lines: 1000,
            max_bytes: 100,
        };
        let (queue, guard, counter) = start(&sink, limits);
        stall_writer(&sink, &queue);

        // Act: 40-byte lines; two fit in 100 bytes.
        let line = [b'x'; 39];
        for _ in 0..5 {
            queue.push(&line);
        }
        sink.open();
        drop(guard);

        // Assert
        assert_eq!(counter.get(), 3);
        let writes = sink.writes();
        assert_eq!(writes[1].len(), 80 + "dropped 3\n".len());
    }

    #[test]
    fn dropping_the_guard_flushes_what_is_queued() {
        // Arrange
        let sink = StallSink::closed();
        sink.open();
        let (queue, guard, _) = start(&sink, QueueLimits::default());

        // Act
        for i in 0..100 {
            queue.push(format!("line {i}\n").as_bytes());
        }
        drop(guard);

        // Assert
        let all: String = sink.writes().concat();
        assert_eq!(all.lines().count(), 100);
        assert!(all.ends_with("line 99\n"));
    }

    #[test]
    fn dropping_the_guard_returns_after_the_flush_timeout_when_the_sink_never_accepts() {
        // Arrange
        let sink = StallSink::closed();
        let (queue, guard) = spawn(
            sink.clone(),
            QueueLimits::default(),
            Counter::default(),
            summary,
            Duration::from_millis(200),
        )
        .unwrap();
        stall_writer(&sink, &queue);

        // Act
        let started = Instant::now();
        drop(guard);

        // Assert: it returned at all (the sink never opens), and not before the timeout.
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(sink.writes().is_empty());
    }

    #[test]
    fn a_line_over_the_cap_is_cut_at_a_character_boundary_with_a_marker() {
        // Arrange
        let sink = StallSink::closed();
        sink.open();
        let (queue, guard, _) = start(&sink, QueueLimits::default());
        // Three-byte characters, so the cut lands inside one unless it looks for a boundary.
        let long = "€".repeat(20_000);

        // Act
        queue.push(long.as_bytes());
        queue.push(b"short\n");
        drop(guard);

        // Assert
        let all = sink.writes().concat();
        let lines: Vec<&str> = all.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].len() <= MAX_LINE_BYTES, "{}", lines[0].len());
        assert!(lines[0].len() > MAX_LINE_BYTES - 4);
        let marker = std::str::from_utf8(TRUNCATED_MARKER).unwrap();
        assert!(lines[0].ends_with(&format!("€{marker}\n")));
        assert_eq!(lines[1], "short\n");
    }

    #[test]
    fn a_sink_that_fails_counts_its_lines_as_dropped() {
        // Arrange
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let counter = Counter::default();
        let (queue, guard) = spawn(
            Broken,
            QueueLimits::default(),
            counter.clone(),
            summary,
            Duration::from_secs(5),
        )
        .unwrap();

        // Act
        queue.push(b"lost\n");
        drop(guard);

        // Assert
        assert_eq!(counter.get(), 1);
    }

    #[test]
    fn char_floor_never_splits_a_character() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        let floors: Vec<usize> = (0..=s.len()).map(|n| char_floor(s, n)).collect();
        assert_eq!(floors, [0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10]);
    }
}
