//! JSON lines, written by hand for their cost: the access-log event is formatted on the request
//! thread for every request. The shape is the one `tracing_subscriber::fmt().json()` with
//! `flatten_event(true)` gives (a test holds them equal): `timestamp`, `level`, the event's
//! fields in order (`message` among them), `target`. Spans are not written; the service opens
//! none.

use std::{
    cell::{Cell, RefCell},
    fmt::{self, Write as _},
    ops::Range,
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::{Layer, layer::Context};

use super::writer::{LogQueue, MAX_LINE_BYTES, TRUNCATED_MARKER};

/// The target of the lines this module makes itself.
const TARGET: &str = "poem_api::telemetry";

/// Fewest bytes a string field keeps when a line is cut to fit [`MAX_LINE_BYTES`].
const MIN_KEPT: usize = 64;

/// Formats every event it sees as one JSON line and queues it.
#[derive(Debug)]
pub struct JsonLayer {
    queue: LogQueue,
}

impl JsonLayer {
    /// A layer writing to `queue`.
    pub fn new(queue: LogQueue) -> Self {
        Self { queue }
    }
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        thread_local! {
            static LINE: RefCell<JsonLine> = RefCell::new(JsonLine::default());
        }
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.format(event);
                self.queue.push(&line.buf);
                line.release_excess();
            }
            // An event logged while formatting one (from a field's Debug impl).
            Err(_) => {
                let mut line = JsonLine::default();
                line.format(event);
                self.queue.push(&line.buf);
            }
        });
    }
}

/// One JSON line being built, and where its string values lie, for cutting it if too long.
#[derive(Debug, Default)]
pub struct JsonLine {
    buf: Vec<u8>,
    strings: Vec<Range<usize>>,
}

impl JsonLine {
    /// Formats `event` as one line ending in `\n`, at most [`MAX_LINE_BYTES`] long.
    pub fn format(&mut self, event: &Event<'_>) {
        let meta = event.metadata();
        self.open(*meta.level());
        event.record(&mut FieldVisitor { line: self });
        self.close(meta.target());
    }

    /// The line built by the last call.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn open(&mut self, level: Level) {
        self.buf.clear();
        self.strings.clear();
        self.buf.extend_from_slice(b"{\"timestamp\":\"");
        write_timestamp(&mut self.buf, SystemTime::now());
        self.buf.extend_from_slice(match level {
            Level::TRACE => b"\",\"level\":\"TRACE\"",
            Level::DEBUG => b"\",\"level\":\"DEBUG\"",
            Level::INFO => b"\",\"level\":\"INFO\"",
            Level::WARN => b"\",\"level\":\"WARN\"",
            Level::ERROR => b"\",\"level\":\"ERROR\"",
        });
    }

    fn close(&mut self, target: &str) {
        self.buf.extend_from_slice(b",\"target\":");
        self.string(target);
        self.buf.extend_from_slice(b"}\n");
        if self.buf.len() > MAX_LINE_BYTES {
            self.shorten();
        }
    }

    fn key(&mut self, name: &str) {
        self.buf.push(b',');
        escape_into(&mut self.buf, name, true);
        self.buf.push(b':');
    }

    fn string(&mut self, value: &str) {
        self.buf.push(b'"');
        let start = self.buf.len();
        escape_into(&mut self.buf, value, false);
        self.strings.push(start..self.buf.len());
        self.buf.push(b'"');
    }

    fn display(&mut self, value: fmt::Arguments<'_>) {
        self.buf.push(b'"');
        let start = self.buf.len();
        // Writing to a Vec cannot fail; a Display impl that errs leaves what it wrote.
        let _ = Escaper(&mut self.buf).write_fmt(value);
        self.strings.push(start..self.buf.len());
        self.buf.push(b'"');
    }

    /// Cuts the longest string values (to [`MIN_KEPT`] bytes at least, each ending in
    /// [`TRUNCATED_MARKER`]) until the line fits, so that it stays valid JSON. If the non-string
    /// parts alone were too long (more than 16 KiB of keys and numbers: no event of this
    /// service comes near), the queue's own cut applies and the line is not valid JSON.
    fn shorten(&mut self) {
        while self.buf.len() > MAX_LINE_BYTES {
            let excess = self.buf.len() - MAX_LINE_BYTES;
            let Some(i) = (0..self.strings.len())
                .filter(|&i| self.strings[i].len() > MIN_KEPT + TRUNCATED_MARKER.len())
                .max_by_key(|&i| self.strings[i].len())
            else {
                return;
            };
            let range = self.strings[i].clone();
            let keep = range
                .len()
                .saturating_sub(excess + TRUNCATED_MARKER.len())
                .max(MIN_KEPT);
            let end = range.start + escaped_floor(&self.buf[range.clone()], keep);
            self.buf
                .splice(end..range.end, TRUNCATED_MARKER.iter().copied());
            let new_end = end + TRUNCATED_MARKER.len();
            let removed = range.end - new_end;
            self.strings[i] = range.start..new_end;
            for other in &mut self.strings {
                if other.start > range.start {
                    *other = other.start - removed..other.end - removed;
                }
            }
        }
    }

    /// A thread that once logged a huge event should not keep its buffer for good.
    fn release_excess(&mut self) {
        if self.buf.capacity() > 4 * MAX_LINE_BYTES {
            self.buf = Vec::new();
        }
    }
}

struct FieldVisitor<'a> {
    line: &'a mut JsonLine,
}

/// 128-bit integers and byte slices fall back to `record_debug` (strings), as in
/// tracing-serde.
impl tracing::field::Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.line.key(field.name());
        self.line.display(format_args!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.line.key(field.name());
        self.line.string(value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.line.key(field.name());
        self.line
            .buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.line.key(field.name());
        self.line
            .buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.line.key(field.name());
        // serde_json's choices: shortest round-trip digits (ryu), `null` for NaN and infinities.
        if value.is_finite() {
            self.line
                .buf
                .extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
        } else {
            self.line.buf.extend_from_slice(b"null");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.line.key(field.name());
        self.line
            .buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }
}

/// The line that reports lost lines, as if logged by `tracing::warn!(dropped, "log lines
/// dropped")` from this module.
pub fn json_summary(out: &mut Vec<u8>, dropped: u64) {
    let mut line = JsonLine::default();
    line.open(Level::WARN);
    line.buf
        .extend_from_slice(b",\"message\":\"log lines dropped\",\"dropped\":");
    line.buf
        .extend_from_slice(itoa::Buffer::new().format(dropped).as_bytes());
    line.close(TARGET);
    out.extend_from_slice(&line.buf);
}

/// The same line in the text format's layout (without colours).
pub fn text_summary(out: &mut Vec<u8>, dropped: u64) {
    write_timestamp(out, SystemTime::now());
    out.extend_from_slice(
        format!("  WARN {TARGET}: log lines dropped dropped={dropped}\n").as_bytes(),
    );
}

/// Appends `s` to `out` as the contents of a JSON string, escaped as serde_json escapes
/// (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control characters as `\u00XX`); with the
/// quotes when `quoted`.
fn escape_into(out: &mut Vec<u8>, s: &str, quoted: bool) {
    let bytes = s.as_bytes();
    if quoted {
        out.push(b'"');
    }
    let clean = clean_prefix(bytes);
    out.extend_from_slice(&bytes[..clean]);
    if clean < bytes.len() {
        escape_each(out, &bytes[clean..]);
    }
    if quoted {
        out.push(b'"');
    }
}

/// A prefix of `bytes` that needs no escaping (all of it, nearly always: keys, paths, ids and
/// names seldom hold a byte to escape), tested eight bytes at a time. A byte-wise scan cost
/// ten instructions a byte, a third of the access-log line's cost.
fn clean_prefix(bytes: &[u8]) -> usize {
    let len = bytes.len();
    let mut n = 0;
    while n + 8 <= len {
        if needs_escape(word(&bytes[n..n + 8])) {
            return n;
        }
        n += 8;
    }
    if n == len {
        return len;
    }
    // The 1..=7 bytes left, tested as one word made of overlapping reads: bytes read twice, or
    // already known clean, change nothing.
    let last = if len >= 8 {
        word(&bytes[len - 8..])
    } else if len >= 4 {
        let half = |b: &[u8]| u64::from(u32::from_ne_bytes(b.try_into().expect("4 bytes")));
        half(&bytes[..4]) | half(&bytes[len - 4..]) << 32
    } else {
        let (a, b, c) = (bytes[0], bytes[len / 2], bytes[len - 1]);
        u64::from_ne_bytes([a, b, c, a, a, a, a, a])
    };
    if needs_escape(last) { n } else { len }
}

fn word(eight: &[u8]) -> u64 {
    u64::from_ne_bytes(eight.try_into().expect("8 bytes"))
}

/// Whether a byte of `w` is below 0x20, `"` or `\\`: the "has a zero byte" and "has a byte less
/// than n" word tests of Bit Twiddling Hacks, which are exact as to whether one exists.
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & HIGH != 0
}

fn escape_each(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let (hi, lo) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]);
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Escapes what is formatted through it, so a `Display` value goes into the line without an
/// intermediate `String`.
struct Escaper<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s, false);
        Ok(())
    }
}

/// The largest `n <= max` at which escaped JSON string contents can be cut: not inside a UTF-8
/// sequence, nor inside an escape such as `\"` or `\u001f`.
fn escaped_floor(escaped: &[u8], max: usize) -> usize {
    let mut n = 0;
    while n < escaped.len() {
        let step = match escaped[n] {
            b'\\' if escaped.get(n + 1) == Some(&b'u') => 6,
            b'\\' => 2,
            b if b < 0x80 => 1,
            b if b >= 0xF0 => 4,
            b if b >= 0xE0 => 3,
            _ => 2,
        };
        if n + step > max {
            break;
        }
        n += step;
    }
    n
}

/// Appends `time` as RFC 3339 in UTC with microseconds (`2026-12-01T11:16:58.265959Z`), the
/// form tracing-subscriber writes. The date and time of day are computed once per second per
/// thread; the rest is six digits.
fn write_timestamp(out: &mut Vec<u8>, time: SystemTime) {
    thread_local! {
        static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
    }
    // A clock before 1970 is written as 1970.
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (cached_secs, mut text) = SECOND.get();
    if cached_secs != secs {
        text = date_time(secs);
        SECOND.set((secs, text));
    }
    out.extend_from_slice(&text);
    let micros = since_epoch.subsec_micros();
    let mut frac = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
    let mut rest = micros;
    for digit in frac[1..7].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&frac);
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time, by Howard Hinnant's `civil_from_days`.
fn date_time(unix_secs: u64) -> [u8; 19] {
    let days = (unix_secs / 86_400) as i64;
    let secs_of_day = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, secs_of_day / 3600);
    put(14, 2, secs_of_day / 60 % 60);
    put(17, 2, secs_of_day % 60);
    text
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use serde_json::Value;
    use tracing_subscriber::{fmt::MakeWriter, layer::SubscriberExt};

    use super::*;

    /// Collects the lines `JsonLayer` makes, through a `JsonLine` as the layer uses it.
    fn ours(emit: impl Fn()) -> Vec<u8> {
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl<S: Subscriber> Layer<S> for Capture {
            fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
                let mut line = JsonLine::default();
                line.format(event);
                self.0.lock().unwrap().extend_from_slice(line.as_bytes());
            }
        }
        let out = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(out.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        out.lock().unwrap().clone()
    }

    /// What `tracing_subscriber::fmt().json().flatten_event(true)` makes of the same events.
    fn reference(emit: impl Fn()) -> Vec<u8> {
        #[derive(Clone)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Buf {
            type Writer = Buf;
            fn make_writer(&'a self) -> Buf {
                self.clone()
            }
        }
        let buf = Buf(Arc::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(buf.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        buf.0.lock().unwrap().clone()
    }

    fn parse_lines(bytes: &[u8]) -> Vec<serde_json::Map<String, Value>> {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.ends_with('\n'));
        text.lines()
            .map(|l| match serde_json::from_str(l).unwrap() {
                Value::Object(map) => map,
                other => panic!("not an object: {other}"),
            })
            .collect()
    }

    fn events() {
        #[derive(Debug)]
        #[allow(dead_code)] // read through Debug only
        struct Thing {
            a: u8,
            b: &'static str,
        }
        let request_id = "8719a546-218c-4fe9-a632-178c855544dc";
        tracing::info!(target: "access", listener = "api", method = %"GET", route = "/",
            path = "/a\"b\\c\u{1}\u{1f}\t\n\r\u{8}\u{c}é€😀", status = 200u16,
            latency_ms = 0.49388899999999997, request_id = %request_id, "request");
        tracing::warn!(signed = -42i64, big = u128::MAX, ratio = f64::NAN, yes = true,
            thing = ?Thing { a: 1, b: "q\"uote" }, "with {} args", 2);
        let err = io::Error::other("disk \"full\"");
        tracing::error!(error = &err as &dyn std::error::Error, "failed");
        tracing::debug!(target: "x::y", "no fields");
    }

    #[test]
    fn lines_have_the_shape_and_values_of_tracing_subscribers_json_format() {
        // Arrange, Act
        let ours = parse_lines(&ours(events));
        let reference = parse_lines(&reference(events));

        // Assert: equal key by key, in order (serde_json keeps the order here), timestamps aside.
        assert_eq!(ours.len(), 4);
        for (mut a, mut b) in ours.into_iter().zip(reference) {
            let (ta, tb) = (
                a.remove("timestamp").unwrap(),
                b.remove("timestamp").unwrap(),
            );
            let (ta, tb) = (ta.as_str().unwrap(), tb.as_str().unwrap());
            assert_eq!((ta.len(), &ta[..10]), (tb.len(), &tb[..10]), "{ta} vs {tb}");
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&a), keys(&b));
            assert_eq!(a, b);
        }
    }

    #[test]
    fn an_event_over_the_cap_is_cut_in_its_longest_string_and_stays_valid_json() {
        // Arrange: escapes and multi-byte characters across the whole value, so every possible
        // cut position is tried against them.
        let path = "/\"é\u{1}€".repeat(8_000);

        // Act
        let bytes = ours(|| {
            tracing::info!(target: "access", method = "GET", path = path.as_str(),
                status = 414u16, request_id = "id-1", "request");
        });

        // Assert
        assert!(bytes.len() <= MAX_LINE_BYTES, "{}", bytes.len());
        assert!(bytes.len() > MAX_LINE_BYTES - 16, "{}", bytes.len());
        let line = &parse_lines(&bytes)[0];
        let marker = std::str::from_utf8(TRUNCATED_MARKER).unwrap();
        let cut = line["path"].as_str().unwrap();
        let kept = cut.strip_suffix(marker).unwrap();
        assert!(path.starts_with(kept));
        assert_eq!(line["status"], 414);
        assert_eq!(line["request_id"], "id-1");
        assert_eq!(line["message"], "request");
        assert_eq!(line["target"], "access");
    }

    #[test]
    fn several_long_fields_are_cut_when_one_is_not_enough() {
        // Arrange: cutting one to its minimum leaves the line too long.
        let long = "x".repeat(12_000);

        // Act
        let bytes = ours(|| {
            tracing::info!(
                a = long.as_str(),
                b = long.as_str(),
                c = long.as_str(),
                "three"
            )
        });

        // Assert
        assert!(bytes.len() <= MAX_LINE_BYTES);
        let line = &parse_lines(&bytes)[0];
        let marker = std::str::from_utf8(TRUNCATED_MARKER).unwrap();
        let cut = ["a", "b", "c"]
            .iter()
            .filter(|k| line[**k].as_str().unwrap().ends_with(marker))
            .count();
        assert_eq!(cut, 2);
        assert_eq!(line["message"], "three");
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        // Every ASCII byte, and a multi-byte character, at every position of strings of every
        // length up to three words.
        let mut chars: Vec<char> = (0u8..0x80).map(char::from).collect();
        chars.push('€');
        for c in chars {
            for (len, at) in (0..24).flat_map(|len| (0..=len).map(move |at| (len, at))) {
                let mut s: String = "a".repeat(len);
                s.insert(at, c);
                let mut ours = Vec::new();
                escape_into(&mut ours, &s, true);
                let reference = serde_json::to_string(&s).unwrap();
                assert_eq!(String::from_utf8(ours).unwrap(), reference, "{c:?} at {at}");
            }
        }
    }

    #[test]
    fn escaped_floor_never_splits_an_escape_or_a_character() {
        let s = br#"a\"\u001f"#; // a, \", \u001f
        let floors: Vec<usize> = (0..=s.len()).map(|n| escaped_floor(s, n)).collect();
        assert_eq!(floors, [0, 1, 1, 3, 3, 3, 3, 3, 3, 9]);
        let s = "é€".as_bytes();
        let floors: Vec<usize> = (0..=s.len()).map(|n| escaped_floor(s, n)).collect();
        assert_eq!(floors, [0, 0, 2, 2, 2, 5]);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let mut out = Vec::new();
            write_timestamp(
                &mut out,
                UNIX_EPOCH + Duration::from_micros(secs * 1_000_000 + micros),
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_825_599, 7), "2000-02-29T11:59:59.000007Z");
        assert_eq!(at(1_798_761_599, 999_999), "2026-12-31T23:59:59.999999Z");
        // The same second again comes from the cache, a new one not.
        assert_eq!(at(1_798_761_599, 5), "2026-12-31T23:59:59.000005Z");
        assert_eq!(at(1_798_761_600, 0), "2027-01-01T00:00:00.000000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
    }

    #[test]
    fn the_summary_line_is_a_json_warning_with_the_count() {
        // Act
        let mut out = Vec::new();
        json_summary(&mut out, 17);

        // Assert
        let line = &parse_lines(&out)[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "log lines dropped");
        assert_eq!(line["dropped"], 17);
        assert_eq!(line["target"], "poem_api::telemetry");
    }
}
