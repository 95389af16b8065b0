"""Abusive clients: slow-loris, idle keep-alive floods, and malformed or oversized requests.

Each part starts its own server with small, stated limits so that the limits are reached quickly;
the defaults differ only in size, not in mechanism.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time

from harness import (HOST, Background, Claim, Row, Server, fmt_bytes, raw_exchange, request)

HEADER_READ_TIMEOUT = 2.0
LORIS_LIMIT = 128  # POEM_API_MAX_CONNECTIONS for the slow-loris server


class Loris:
    """N connections that send a partial request head and then one header line every 0.5 s.

    Tracks when the server closes each of them. Runs until stop() or `max_seconds`.
    """

    def __init__(self, port: int, n: int, max_seconds: float = 30.0):
        self.socks: list[socket.socket] = []
        self.closed_at: dict[int, float] = {}
        self.started = time.monotonic()
        for _ in range(n):
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            s.setblocking(False)
            self.socks.append(s)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(max_seconds,), daemon=True)
        self._t.start()

    def _run(self, max_seconds: float) -> None:
        deadline = self.started + max_seconds
        next_trickle = time.monotonic() + 0.5
        line = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            open_ = [s for i, s in enumerate(self.socks) if i not in self.closed_at]
            if not open_:
                break
            readable, _, _ = select.select(open_, [], [], 0.05)
            for s in readable:
                self._read(s)
            if time.monotonic() >= next_trickle:
                line += 1
                for i, s in enumerate(self.socks):
                    if i in self.closed_at:
                        continue
                    try:
                        s.send(f"X-Trickle-{line}: a\r\n".encode())
                    except BlockingIOError:
                        pass  # send buffer full: the server is not reading; still open
                    except OSError:
                        self.closed_at[i] = time.monotonic()
                next_trickle += 0.5

    def _read(self, s: socket.socket) -> None:
        i = self.socks.index(s)
        try:
            if s.recv(65536) == b"":
                self.closed_at[i] = time.monotonic()
            # Any bytes (an error response) are fine; the close follows.
        except BlockingIOError:
            pass
        except OSError:
            self.closed_at[i] = time.monotonic()

    def wait_all_closed(self, timeout: float) -> bool:
        self._t.join(timeout)
        return len(self.closed_at) == len(self.socks)

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)
        for s in self.socks:
            s.close()


def timed_get(port: int, timeout: float) -> tuple[int | str, float]:
    t = time.monotonic()
    try:
        return request(port, "GET", "/", timeout=timeout).status, time.monotonic() - t
    except OSError as e:
        return type(e).__name__, time.monotonic() - t


def slow_loris(command: str) -> list[Row]:
    rows = []
    env = {"POEM_API_HEADER_READ_TIMEOUT": f"{int(HEADER_READ_TIMEOUT * 1000)}ms",
           "POEM_API_MAX_CONNECTIONS": str(LORIS_LIMIT), "POEM_API_LOG": "error"}

    # Below the connection limit: normal clients are served at once, the loris are cut off.
    c = Claim()
    n = LORIS_LIMIT * 3 // 4
    with Server(env) as srv:
        loris = Loris(srv.api_port, n)
        time.sleep(0.5)
        results = [timed_get(srv.api_port, timeout=10) for _ in range(50)]
        ok = sum(1 for s, _ in results if s == 200)
        worst = max(t for _, t in results)
        c.expect(ok == 50, f"only {ok}/50 normal requests answered 200: {results[:5]}")
        c.expect(worst < HEADER_READ_TIMEOUT,
                 f"a normal request waited {worst:.2f} s (>= header read timeout)")
        all_closed = loris.wait_all_closed(HEADER_READ_TIMEOUT + 5)
        last = max(loris.closed_at.values(), default=loris.started) - loris.started
        loris.stop()
        c.expect(all_closed, f"{len(loris.closed_at)}/{n} trickling connections were closed")
        c.expect(srv.healthy(), "not healthy afterwards")
    rows.append(Row("slow-loris", f"{n} connections trickling headers (limit {LORIS_LIMIT}) do "
                    "not delay normal clients and are cut off", c.ok,
                    f"50/50 normal GET / answered 200 while {n} trickled, slowest "
                    f"{worst * 1000:.0f} ms; all {n} trickling connections closed by the server "
                    f"{last:.1f} s after they began (header read timeout "
                    f"{HEADER_READ_TIMEOUT:.0f} s, one header line every 0.5 s)", command,
                    c.failures))

    # Twice the connection limit: accept waits, but eviction frees slots, so normal clients are
    # still served (after at most a few header-read timeouts), and the admin port is unaffected.
    c = Claim()
    n = LORIS_LIMIT * 2
    with Server(env) as srv:
        cpu0 = srv.cpu_seconds()
        loris = Loris(srv.api_port, n)
        time.sleep(0.5)
        health = srv.admin("GET", "/healthz", timeout=5)
        c.expect(health.status == 200 and health.elapsed < 1.0,
                 f"admin /healthz during saturation: {health.status} in {health.elapsed:.2f} s")
        bound = 3 * HEADER_READ_TIMEOUT + 5
        clients = [Background(timed_get, srv.api_port, bound) for _ in range(10)]
        for b in clients:
            b.join(bound + 2)
        results = [b.result or (repr(b.error), bound) for b in clients]
        ok = sum(1 for s, _ in results if s == 200)
        worst = max(t for _, t in results)
        c.expect(ok == len(clients), f"{ok}/{len(clients)} normal requests answered: {results}")
        all_closed = loris.wait_all_closed(3 * HEADER_READ_TIMEOUT + 5)
        loris.stop()
        cpu = srv.cpu_seconds() - cpu0
        elapsed = time.monotonic() - loris.started
        c.expect(all_closed, f"{len(loris.closed_at)}/{n} trickling connections were closed")
        c.expect(cpu < 0.5 * elapsed, f"server used {cpu:.2f} CPU-s in {elapsed:.1f} s "
                 "(a busy accept loop?)")
        c.expect(srv.healthy(), "not healthy afterwards")
    rows.append(Row("slow-loris-over-limit", f"{n} trickling connections (2x the limit) delay "
                    "normal clients by a bounded time only", c.ok,
                    f"{ok}/{len(clients)} normal GET / answered 200, slowest {worst:.1f} s "
                    f"(bound {bound:.0f} s); admin /healthz 200 in {health.elapsed * 1000:.0f} ms "
                    f"meanwhile; server CPU {cpu:.2f} s over {elapsed:.1f} s", command, c.failures))
    return rows


def keepalive_flood(command: str, n: int = 1000) -> list[Row]:
    """Fill the connection limit with idle keep-alive connections: memory stays bounded, accept
    waits instead of spinning, the admin port still answers, idle connections are closed in time,
    and the waiting client is then served."""
    c = Claim()
    keep_alive = 10.0
    env = {"POEM_API_MAX_CONNECTIONS": str(n), "POEM_API_KEEP_ALIVE_TIMEOUT": f"{int(keep_alive)}s",
           "POEM_API_HEADER_READ_TIMEOUT": "5s", "POEM_API_ACCESS_LOG": "false",
           "POEM_API_LOG": "warn"}
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with Server(env) as srv:
        for _ in range(200):  # warm up allocator and thread pools before the baseline
            srv.api("GET", "/")
        rss0 = srv.rss_bytes()
        socks = []
        t0 = time.monotonic()
        for _ in range(n):
            s = socket.create_connection((HOST, srv.api_port), timeout=5)
            s.sendall(req)
            socks.append(s)
        for s in socks:  # read each response; the connection stays open and idle
            r = http.client.HTTPResponse(s, method="GET")
            r.begin()
            r.read()
            if not c.expect(r.status == 200 and not r.will_close,
                            f"flood connection got {r.status}, will_close={r.will_close}"):
                break
        flooded_at = time.monotonic()
        c.expect(flooded_at - t0 < keep_alive / 2, f"opening {n} connections took "
                 f"{flooded_at - t0:.1f} s: too slow for this test's timing")
        time.sleep(0.5)
        rss1 = srv.rss_bytes()
        open_api = srv.metric_sum("http_connections_open", listener="api")
        fds = srv.open_fds()
        cpu0 = srv.cpu_seconds()
        time.sleep(2.0)
        idle_cpu = srv.cpu_seconds() - cpu0

        # One more client: not accepted while the limit is reached...
        extra = socket.create_connection((HOST, srv.api_port), timeout=5)
        extra.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        r, _, _ = select.select([extra], [], [], 1.0)
        waited = not r
        health = srv.admin("GET", "/healthz", timeout=5)
        still_before_timeout = time.monotonic() < t0 + keep_alive - 0.5
        c.expect(still_before_timeout, "test timing: the idle timeout began before the checks")
        c.expect(waited, "a connection beyond the limit was answered while the limit was full")
        c.expect(health.status == 200, f"admin /healthz during the flood: {health.status}")

        # ...and served once the idle ones have been closed by the keep-alive timeout.
        extra.settimeout(keep_alive + 10)
        try:
            data = extra.recv(65536)
        except OSError as e:
            data = repr(e).encode()
        extra_served_after = time.monotonic() - flooded_at
        c.expect(data.startswith(b"HTTP/1.1 200"), f"the waiting client got {data[:60]!r}")
        closed = 0
        deadline = t0 + keep_alive + 5
        for s in socks:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if s.recv(1) == b"":
                    closed += 1
            except ConnectionResetError:
                closed += 1
            except OSError:
                pass
            s.close()
        extra.close()
        c.expect(closed == n, f"only {closed}/{n} idle connections closed by the server within "
                 f"keep-alive timeout + 5 s")
        time.sleep(0.5)
        rss2 = srv.rss_bytes()
        c.expect(rss1 - rss0 < 64 * 1024 * 1024,
                 f"RSS grew by {fmt_bytes(rss1 - rss0)} for {n} idle connections")
        c.expect(idle_cpu < 0.5, f"server used {idle_cpu:.2f} CPU-s in 2 s while full and idle")
        c.expect(srv.healthy(), "not healthy afterwards")
    figures = (f"{n} idle keep-alive connections (= limit; metric http_connections_open "
               f"{open_api:.0f}, {fds} fds): RSS {fmt_bytes(rss0)} -> {fmt_bytes(rss1)} "
               f"({(rss1 - rss0) / n / 1024:.1f} KiB per connection), {fmt_bytes(rss2)} after; "
               f"server CPU {idle_cpu:.2f} s over 2 s while full; connection {n + 1} not answered "
               f"within 1 s, answered 200 {extra_served_after:.1f} s later after idle connections "
               f"were closed ({keep_alive:.0f} s keep-alive timeout); admin /healthz 200")
    return [Row("keepalive-flood", "idle connections up to the limit: memory bounded, accept "
                "waits, idle ones time out", c.ok, figures, command, c.failures)]


# --- malformed and oversized requests ---------------------------------------------------------

def problem_ok(r, status: int) -> list[str]:
    """Problems with a response that should be `status` with an RFC 9457 body; [] if none."""
    errs = []
    if r.status != status:
        errs.append(f"status {r.status}, expected {status}")
    ct = r.headers.get("content-type", "")
    if not ct.startswith("application/problem+json"):
        errs.append(f"content-type {ct!r}, expected application/problem+json")
        return errs
    try:
        body = json.loads(r.body)
    except ValueError:
        return errs + [f"body is not JSON: {r.body[:80]!r}"]
    for k in ("type", "title", "status"):
        if k not in body:
            errs.append(f"problem body lacks {k!r}")
    if body.get("status") != r.status:
        errs.append(f"problem status {body.get('status')} != HTTP status {r.status}")
    if "x-request-id" not in r.headers:
        errs.append("no x-request-id header")
    return errs


def _echo(body: bytes, ct: str = "application/json", extra: str = "") -> bytes:
    return (f"POST /api/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ct}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def _get(path: bytes, headers: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n"


def _chunked_body(total: int) -> bytes:
    chunk = b"a" * 16384
    out = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(total // len(chunk)))
    return out + b"0\r\n\r\n"


BIG = 16 * 1024 * 1024
NEST = 20000  # 40 kB of brackets: inside the 64 KiB body limit, far past any sane depth
# The shape of RUSTSEC-2026-0194 (many attributes on one XML start tag), as large as the body
# limit allows: the API takes JSON only, so it must be refused without being parsed.
XML = b"<a " + b" ".join(b"a%d=\"\"" % i for i in range(6000)) + b"/>"

# Rejected by hyper's HTTP/1 parser before the application sees a request, so the response is
# hyper's own: the right status with an empty body (a problem+json body is accepted as well).
PARSER = "parser"

# (name, request bytes, expected status, method for parsing the response[, PARSER])
BAD_REQUESTS = [
    ("body 16 MiB declared, 256 KiB sent",
     (b"POST /api/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      b"Content-Length: %d\r\n\r\n" % BIG) + b"a" * 262144, 413, "POST"),
    ("body 256 KiB chunked (no length)",
     b"POST /api/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n" + _chunked_body(262144), 413, "POST"),
    ("JSON nested 20000 deep", _echo(b"[" * NEST + b"]" * NEST), 400, "POST"),
    ("JSON nested 20000 deep inside a field",
     _echo(b'{"message":"hi","meta":' + b"[" * NEST + b"]" * NEST + b"}"), 400, "POST"),
    ("invalid UTF-8 in a JSON string", _echo(b'{"message":"\xff\xfe\xfd"}'), 400, "POST"),
    ("malformed JSON", _echo(b'{"message":'), 400, "POST"),
    ("JSON violating every constraint",
     _echo(json.dumps({"message": "", "count": 0, "tags": ["t"] * 17,
                       "meta": {"priority": 10}}).encode()), 422, "POST"),
    ("wrong content type text/plain", _echo(b'{"message":"hi"}', ct="text/plain"), 415, "POST"),
    ("wrong content type form", _echo(b"message=hi", ct="application/x-www-form-urlencoded"), 415,
     "POST"),
    ("XML body, 6000 attributes on one tag", _echo(XML, ct="application/xml"), 415, "POST"),
    ("wrong method DELETE /api/v1/echo",
     b"DELETE /api/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405, "DELETE"),
    ("wrong method PUT /", b"PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", 405,
     "PUT"),
    ("unknown path", _get(b"/api/v1/nope"), 404, "GET"),
    ("percent-encoded invalid UTF-8 in a path parameter", _get(b"/api/v1/delay/%FF%FE"), 400,
     "GET"),
    ("delay above the maximum", _get(b"/api/v1/delay/999999999"), 400, "GET"),
    ("status code out of range", _get(b"/api/v1/status/42"), 400, "GET"),
    ("raw invalid UTF-8 bytes in the request target", _get(b"/api/v1/\xff\xfe"), 400, "GET",
     PARSER),
    ("one 1 MiB header", _get(b"/", b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n"), 431, "GET",
     PARSER),
    ("200 headers", _get(b"/", b"".join(b"X-H%d: v\r\n" % i for i in range(200))), 431, "GET",
     PARSER),
]


def bad_requests(command: str) -> list[Row]:
    rows = []
    with Server({"POEM_API_LOG": "warn"}) as srv:
        for name, data, status, method, *parser in BAD_REQUESTS:
            c = Claim()
            try:
                r = raw_exchange(srv.api_port, data, method=method, timeout=10)
                errors = problem_ok(r, status)
                if parser and r.status == status and not r.body:
                    got = f"{r.status}, empty body (from hyper's parser)"
                else:
                    got = f"{r.status} {r.headers.get('content-type', '-')}"
                    for e in errors:
                        c.expect(False, e)
            except Exception as e:  # noqa: BLE001 - a connection error is a result here
                got = f"{type(e).__name__}: {e}"
                c.expect(False, f"no response: {got}")
            c.expect(srv.healthy(), "not healthy afterwards (/healthz or GET /)")
            claim = (f"{status}, then healthy" if parser
                     else f"{status} problem+json, then healthy")
            rows.append(Row(f"bad-request: {name}", claim, c.ok,
                            f"{got}; /healthz 200 and GET / 200 afterwards" if c.ok else got,
                            command, c.failures))
    return rows


def check(command: str) -> list[Row]:
    return bad_requests(command) + slow_loris(command) + keepalive_flood(command)
