"""HTTP/2 by prior knowledge against the release binary: real clients (curl, h2load), the
zero-loss stop, rapid reset, more streams than allowed, and slow readers of a stream.

The misbehaving clients use the `h2` package (a protocol state machine with no I/O of its
own) over plain sockets, so they can do what a polite client never would: reset streams in a
burst, open more than the server allows before its SETTINGS arrive, never open a window.
Every wait has a deadline, every loop a bound; 127.0.0.1 only.
"""

from __future__ import annotations

import re
import signal
import socket
import statistics
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from harness import (HOST, Background, Claim, Row, Server, _die_with_parent, connect_outcome,
                     fmt_bytes, sleep_until)
from serving import api_connections, latency_text, memory_budget, probe_series, wait_for, worst


class H2Client:
    """One HTTP/2 connection by prior knowledge, driven synchronously."""

    def __init__(self, port: int, settings: dict | None = None, timeout: float = 10.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.flush()
        self.responses: dict[int, dict] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.raw = b""
        # The last stream id of the newest GOAWAY.
        self.last_stream_id: int | None = None
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(self, method: str, path: str, body: bytes | None = None,
              headers: list[tuple[str, str]] | None = None) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":path", path),
                  (":authority", f"{HOST}")] + (headers or [])
        if body is not None:
            fields.append(("content-type", "application/json"))
        self.conn.send_headers(sid, fields, end_stream=body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self.responses[sid] = {"status": None, "body": b"", "done": False, "reset": None}
        self.flush()
        return sid

    def pump(self, timeout: float) -> None:
        """Reads and handles what arrives within `timeout` (one read)."""
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return
        except OSError:
            self.closed = True
            return
        if not data:
            self.closed = True
            return
        # Fed one frame at a time, because the `h2` package closes its state machine on a
        # GOAWAY and raises on every later frame (python-hyper/h2#1181), where RFC 9113 §6.8
        # lets the streams up to the GOAWAY's last id complete (and hyper's graceful GOAWAY
        # comes with a PING to answer, then a second GOAWAY with the real last id). So each
        # GOAWAY is read here, and the state machine put back to open: no stream is started on
        # this connection after one (the callers check `goaway`).
        self.raw += data
        events = []
        while len(self.raw) >= 9:
            end = 9 + int.from_bytes(self.raw[:3], "big")
            if len(self.raw) < end:
                break
            frame, self.raw = self.raw[:end], self.raw[end:]
            try:
                events += self.conn.receive_data(frame)
            except h2.exceptions.ProtocolError:
                self.closed = True
                return
            if frame[3] == 0x7:
                self.last_stream_id = int.from_bytes(frame[9:13], "big") & 0x7FFF_FFFF
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        for e in events:
            r = self.responses.get(getattr(e, "stream_id", None) or -1)
            if isinstance(e, h2.events.ResponseReceived) and r is not None:
                r["status"] = int(dict(e.headers)[":status"])
            elif isinstance(e, h2.events.DataReceived):
                if r is not None:
                    r["body"] += e.data
                self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded) and r is not None:
                r["done"] = True
            elif isinstance(e, h2.events.StreamReset) and r is not None:
                r["reset"] = e.error_code
                r["done"] = True
            elif isinstance(e, h2.events.ConnectionTerminated) and self.goaway is None:
                self.goaway = e
        try:
            self.flush()
        except OSError:
            self.closed = True

    def wait(self, sids: list[int], timeout: float) -> bool:
        """Until every stream of `sids` is done (or the connection closed): True if all are."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self.closed:
            if all(self.responses[s]["done"] for s in sids):
                return True
            self.pump(end - time.monotonic())
        return all(self.responses[s]["done"] for s in sids)

    def until_closed(self, timeout: float) -> float | None:
        """Seconds until the server closed the connection, None if still open."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout and not self.closed:
            self.pump(timeout - (time.monotonic() - t0))
        return time.monotonic() - t0 if self.closed else None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def h2_get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int | None, float]:
    """One GET on a fresh HTTP/2 connection: (status, seconds)."""
    t = time.monotonic()
    try:
        c = H2Client(port, timeout=timeout)
        sid = c.start("GET", path)
        c.wait([sid], timeout)
        c.close()
        return c.responses[sid]["status"], time.monotonic() - t
    except OSError:
        return None, time.monotonic() - t


# --- real clients ------------------------------------------------------------------------------

def real_clients(command: str) -> list[Row]:
    """curl --http2-prior-knowledge and h2load against the same port HTTP/1.1 is served on."""
    c = Claim()
    env = {"POEM_API_ACCESS_LOG": "false", "POEM_API_LOG": "warn"}
    with Server(env) as srv:
        curl = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w",
             "%{http_version} %{http_code}", srv.url("/")],
            capture_output=True, text=True, timeout=20)
        echo = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
             "-H", "content-type: application/json", "-d", '{"message":"hi","count":2}',
             srv.url("/api/v1/echo")], capture_output=True, text=True, timeout=20)
        n = 20000
        load = subprocess.run(["h2load", "-n", str(n), "-c", "8", "-m", "10", srv.url("/")],
                              capture_output=True, text=True, timeout=120,
                              preexec_fn=_die_with_parent)
        http1 = srv.api("GET", "/").status
        healthy = srv.healthy()
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed",
                  load.stdout)
    codes = re.search(r"status codes: (\d+) 2xx", load.stdout)
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", load.stdout)
    succeeded, twoxx = (int(m.group(3)) if m else 0), (int(codes.group(1)) if codes else 0)
    echo_body, _, echo_status = echo.stdout.rpartition("\n")
    c.expect(curl.stdout == "2 200", f"curl GET /: {curl.stdout!r} {curl.stderr[-200:]!r}")
    c.expect(echo_status == "2 200" and '"count":2' in echo_body,
             f"curl POST echo: {echo.stdout[-300:]!r}")
    c.expect(succeeded == n and twoxx == n, f"h2load: {load.stdout[-600:]!r}")
    c.expect(http1 == 200, f"HTTP/1.1 GET / on the same port: {http1}")
    c.expect(healthy, "not healthy afterwards")
    figures = (f"curl --http2-prior-knowledge: GET / {curl.stdout}, POST echo {echo_status} "
               f"(HTTP version, status); h2load -n {n} -c 8 -m 10: {twoxx} 2xx of {n}"
               + (f" at {float(rps.group(1)):,.0f} req/s" if rps else "")
               + f"; HTTP/1.1 GET / on the same port {http1}")
    return [Row("h2-clients", "curl and h2load speak HTTP/2 by prior knowledge to the API port, "
                "beside HTTP/1.1", c.ok, figures, command, c.failures)]


# --- zero-loss stop ----------------------------------------------------------------------------

DRAIN, SHUTDOWN = 3.0, 5.0


def loader(port: int, until: float, stats: dict, lock: threading.Lock) -> None:
    """GET / over HTTP/2, 10 streams at a time, until `until`. After GOAWAY the streams the
    server did not take (id above its last) are sent again on a new connection, as RFC 9113
    §6.8 allows; any other outcome than a 2xx is a failure."""
    c = None
    while time.monotonic() < until:
        try:
            if c is None or c.goaway is not None or c.closed:
                if c is not None:
                    c.close()
                c = H2Client(port, timeout=5)
                with lock:
                    stats["connections"] += 1
            sids = [c.start("GET", "/") for _ in range(10)]
            c.wait(sids, 5)
            for s in sids:
                r = c.responses.pop(s)
                last = c.last_stream_id
                with lock:
                    if r["status"] is not None and 200 <= r["status"] < 300 and r["done"]:
                        stats["ok"] += 1
                    elif last is not None and s > last and r["status"] is None:
                        stats["retried"] += 1  # never processed: safe to send again
                    else:
                        stats["failed"] += 1
                        stats["errors"].append(f"stream {s}: {r}")
        except (OSError, h2.exceptions.H2Error) as e:
            with lock:
                stats["failed"] += 1
                stats["errors"].append(type(e).__name__)
            c = None
    if c is not None:
        c.close()


def zero_loss_stop(command: str) -> list[Row]:
    c = Claim()
    env = {"POEM_API_DRAIN_DELAY": f"{int(DRAIN)}s", "POEM_API_SHUTDOWN_TIMEOUT": f"{int(SHUTDOWN)}s",
           "POEM_API_ACCESS_LOG": "false", "POEM_API_LOG": "warn"}
    srv = Server(env, name="h2-zero-loss").start()
    try:
        port = srv.api_port
        stats = {"ok": 0, "failed": 0, "retried": 0, "connections": 0, "errors": []}
        lock = threading.Lock()
        ts = time.monotonic() + 1.5
        load = [Background(loader, port, ts + DRAIN - 1, stats, lock) for _ in range(8)]
        # A slow stream in flight when SIGTERM comes, on a connection of its own.
        slow = H2Client(port, timeout=10)
        sleep_until(ts - 0.5)
        slow_sid = slow.start("GET", "/api/v1/delay/3000")
        sleep_until(ts)
        srv.signal(signal.SIGTERM)
        # A second one late in the drain, on a new connection: still accepted.
        sleep_until(ts + DRAIN - 0.5)
        late = H2Client(port, timeout=10)
        late_sid = late.start("GET", "/api/v1/delay/2000")
        for b in load:
            b.join(15)
        sleep_until(ts + DRAIN + 1)
        after = connect_outcome(port)
        slow_done = slow.wait([slow_sid], 10)
        late_done = late.wait([late_sid], 10)
        slow.until_closed(5)
        late.until_closed(5)
        code = srv.wait(DRAIN + SHUTDOWN + 3)
        took = time.monotonic() - ts
    finally:
        srv.kill()
    errors = [b.error for b in load if b.error]
    c.expect(not errors, f"loader crashed: {errors}")
    c.expect(stats["failed"] == 0, f"{stats['failed']} failed: {stats['errors'][:5]}")
    c.expect(stats["ok"] > 1000, f"test setup: only {stats['ok']} requests answered")
    for name, cl, sid, done in (("slow", slow, slow_sid, slow_done), ("late", late, late_sid,
                                                                        late_done)):
        r = cl.responses[sid]
        c.expect(done and r["status"] == 200, f"the {name} stream: {r}")
        c.expect(cl.goaway is not None and cl.goaway.error_code == 0,
                 f"the {name} stream's connection saw no GOAWAY NO_ERROR: {cl.goaway}")
    c.expect(after == "refused", f"a new connection after the listener closed: {after}")
    c.expect(code == 0 and took < DRAIN + SHUTDOWN + 1, f"exit {code} after {took:.1f} s")
    figures = (f"8 clients x 10 streams on GET / over HTTP/2 from 1.5 s before SIGTERM to 1 s "
               f"before the end of the {DRAIN:.0f} s drain: {stats['ok']} answered 2xx, "
               f"{stats['failed']} failed, {stats['retried']} not taken after GOAWAY and sent "
               f"again, {stats['connections']} connections; streams in flight at SIGTERM and "
               f"late in the drain: {slow.responses[slow_sid]['status']} and "
               f"{late.responses[late_sid]['status']}, each connection then GOAWAY "
               f"{getattr(slow.goaway, 'error_code', None)}; after close: {after}; exit {code} "
               f"{took:.1f} s after SIGTERM")
    return [Row("h2-zero-loss-stop", "SIGTERM under HTTP/2 load loses no request; streams in "
                "flight finish after GOAWAY", c.ok, figures, command, c.failures)]


# --- rapid reset -------------------------------------------------------------------------------

def rapid_reset_burst(port: int, streams: int) -> tuple[int | None, int, float]:
    """HEADERS + RST_STREAM for `streams` streams as fast as the socket takes them: (GOAWAY
    error code, streams sent before the server cut it off, seconds)."""
    c = H2Client(port, timeout=5)
    t = time.monotonic()
    sent = 0
    try:
        for _ in range(streams // 50):
            for _ in range(50):
                sid = c.conn.get_next_available_stream_id()
                c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                          (":path", "/api/v1/delay/100"), (":authority", HOST)],
                                    end_stream=True)
                c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                sent += 1
            c.flush()
            c.pump(0.001)
            if c.goaway is not None or c.closed:
                break
    except (OSError, h2.exceptions.H2Error):
        pass
    c.until_closed(5)
    code = c.goaway.error_code if c.goaway is not None else None
    c.close()
    return code, sent, time.monotonic() - t


def rapid_reset(command: str) -> list[Row]:
    c = Claim()
    env = {"POEM_API_ACCESS_LOG": "false", "POEM_API_LOG": "warn"}
    attackers, bursts = 4, 5
    with Server(env) as srv:
        port = srv.api_port
        cpu0 = srv.cpu_seconds()
        results: list = []
        lock = threading.Lock()

        def attack():
            for _ in range(bursts):
                r = rapid_reset_burst(port, 5000)
                with lock:
                    results.append(r)

        threads = [Background(attack) for _ in range(attackers)]
        served = []
        t0 = time.monotonic()
        while any(not b.join(0) for b in threads) and time.monotonic() - t0 < 30:
            served.append(h2_get(port))
        for b in threads:
            b.join(30)
        health = probe_series(srv, 0.5)
        cpu = srv.cpu_seconds() - cpu0
        healthy = srv.healthy()
    codes = [r[0] for r in results]
    calm = int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
    ok = [s for s, _ in served if s == 200]
    lat = sorted(t for s, t in served if s == 200)
    c.expect(len(results) == attackers * bursts, f"{len(results)} bursts finished")
    c.expect(all(code == calm for code in codes), f"GOAWAY codes {codes}")
    c.expect(served and len(ok) == len(served), f"{len(served) - len(ok)} of {len(served)} "
             "GETs of another client failed during the attack")
    c.expect(worst(health) < 1.0, f"admin /healthz afterwards: {latency_text(health)}")
    c.expect(healthy, "not healthy afterwards")
    sent = [r[1] for r in results]
    figures = (f"{attackers} attackers x {bursts} connections, each HEADERS + RST_STREAM for up "
               f"to 5000 streams in bursts of 50: every connection got GOAWAY ENHANCE_YOUR_CALM "
               f"({codes.count(calm)}/{len(codes)}) after {min(sent, default=0)}-"
               f"{max(sent, default=0)} streams sent; server CPU {cpu:.2f} s in all; another "
               f"client meanwhile: {len(ok)}/{len(served)} GET / answered 200 on fresh HTTP/2 "
               f"connections, p50 {statistics.median(lat) * 1000 if lat else float('nan'):.1f} "
               f"ms, max {lat[-1] * 1000 if lat else float('nan'):.1f} ms")
    return [Row("h2-rapid-reset", "rapid reset (CVE-2023-44487) gets GOAWAY; other clients are "
                "served meanwhile", c.ok, figures, command, c.failures)]


# --- more streams than allowed -----------------------------------------------------------------

def many_streams(command: str) -> list[Row]:
    """Each connection opens 150 streams at once, before the server's SETTINGS arrive (a
    client that ignores the bound): 100 are served, the rest refused; with more streams than
    connection slots, the streams beyond the slots get 503. Memory stays under the budget."""
    c = Claim()
    limit, max_streams, per_conn, conns = 256, 100, 150, 4
    env = {"POEM_API_MAX_CONNECTIONS": str(limit), "POEM_API_HTTP2_MAX_STREAMS": str(max_streams),
           "POEM_API_ACCESS_LOG": "false", "POEM_API_LOG": "warn"}
    budget = memory_budget(env)
    with Server(env) as srv:
        rss0 = srv.rss_bytes()
        clients = [H2Client(srv.api_port, timeout=10) for _ in range(conns)]
        sids = [[cl.start("GET", "/api/v1/delay/1500") for _ in range(per_conn)] for cl in clients]
        done = [Background(cl.wait, s, 15) for cl, s in zip(clients, sids)]
        time.sleep(0.7)
        rss_peak = srv.rss_bytes()
        health = probe_series(srv, 0.5)
        for b in done:
            b.join(20)
        rss_peak = max(rss_peak, srv.rss_bytes())
        for cl in clients:
            cl.close()
        healthy = wait_for(srv.healthy, 10, step=0.5) is not None
    outcome = {"200": 0, "503": 0, "refused": 0, "other": 0}
    refused_code = int(h2.errors.ErrorCodes.REFUSED_STREAM)
    for cl, ss in zip(clients, sids):
        for s in ss:
            r = cl.responses[s]
            if r["status"] == 200 and r["done"]:
                outcome["200"] += 1
            elif r["status"] == 503:
                outcome["503"] += 1
            elif r["reset"] == refused_code:
                outcome["refused"] += 1
            else:
                outcome["other"] += 1
    total = conns * per_conn
    # Slots: the limit less the connections themselves' and the one the accept loop holds
    # for the next connection, plus the four first streams that use their connection's slot.
    slots_for_streams = limit - conns - 1 + conns
    c.expect(outcome["other"] == 0, f"outcomes {outcome}")
    c.expect(outcome["refused"] == conns * (per_conn - max_streams),
             f"{outcome['refused']} refused, expected {conns * (per_conn - max_streams)}")
    c.expect(outcome["200"] == min(conns * max_streams, slots_for_streams),
             f"{outcome['200']} served, expected {min(conns * max_streams, slots_for_streams)}")
    c.expect(rss_peak < budget, f"RSS {fmt_bytes(rss_peak)} over the stated worst case "
             f"{fmt_bytes(budget)}")
    c.expect(worst(health) < 1.0, f"admin /healthz meanwhile: {latency_text(health)}")
    c.expect(healthy, "not healthy afterwards")
    figures = (f"{conns} connections x {per_conn} streams at once on GET /api/v1/delay/1500 "
               f"(max streams {max_streams}, connection limit {limit}): {outcome['200']} x 200, "
               f"{outcome['503']} x 503 (no free slot), {outcome['refused']} refused "
               f"(REFUSED_STREAM), {outcome['other']} other, of {total}; RSS {fmt_bytes(rss0)} -> "
               f"peak {fmt_bytes(rss_peak)}, stated worst case {fmt_bytes(budget)}; admin /healthz "
               f"{latency_text(health)}")
    return [Row("h2-many-streams", "streams beyond the bound are refused, beyond the free slots "
                "answered 503; memory stays bounded", c.ok, figures, command, c.failures)]


# --- every slot a stream with an unfinished body --------------------------------------------

def bodies(command: str) -> list[Row]:
    """Every connection slot held by an HTTP/2 stream in its most expensive phase: a body 1 KiB
    short of the limit and of its declared length, never finished; RSS stays under the stated
    worst case (`poem-api --memory-budget`), whose HTTP/2 slot is this."""
    c = Claim()
    limit, conns, per_conn = 256, 32, 7
    body_limit = 64 * 1024
    env = {"POEM_API_MAX_CONNECTIONS": str(limit), "POEM_API_BODY_LIMIT": "64KiB",
           "POEM_API_HEADER_LIMIT": "32KiB", "POEM_API_REQUEST_TIMEOUT": "30s",
           "POEM_API_KEEP_ALIVE_TIMEOUT": "30s", "POEM_API_ACCESS_LOG": "false",
           "POEM_API_LOG": "warn"}
    budget = memory_budget(env)
    with Server(env) as srv:
        rss0 = srv.rss_bytes()
        clients = [H2Client(srv.api_port, timeout=10) for _ in range(conns)]
        left: dict[tuple[int, int], int] = {}
        for i, cl in enumerate(clients):
            for _ in range(per_conn):
                sid = cl.conn.get_next_available_stream_id()
                cl.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                           (":path", "/api/v1/echo"), (":authority", HOST),
                                           ("content-type", "application/json"),
                                           ("content-length", str(body_limit))])
                cl.responses[sid] = {"status": None, "body": b"", "done": False, "reset": None}
                left[(i, sid)] = body_limit - 1024
            cl.flush()
        end = time.monotonic() + 15
        while any(left.values()) and time.monotonic() < end:
            for (i, sid), n in left.items():
                cl = clients[i]
                room = min(n, cl.conn.local_flow_control_window(sid), cl.conn.max_outbound_frame_size)
                if room > 0:
                    cl.conn.send_data(sid, b" " * room)
                    left[(i, sid)] = n - room
            for cl in clients:
                cl.flush()
                cl.pump(0.005)
        sent = sum(body_limit - 1024 - n for n in left.values())
        held = api_connections(srv)
        rss_peak = srv.rss_bytes()
        for _ in range(8):  # 2 s: let the bodies settle in their buffers
            time.sleep(0.25)
            rss_peak = max(rss_peak, srv.rss_bytes())
        health = probe_series(srv, 0.5)
        answered = sum(1 for cl in clients for r in cl.responses.values() if r["status"])
        for cl in clients:
            cl.close()
        healthy = wait_for(srv.healthy, 10, step=0.5) is not None
    streams = conns * per_conn
    c.expect(not any(left.values()), f"test setup: {sum(v > 0 for v in left.values())} bodies "
             f"not sent in full ({sent} bytes sent)")
    c.expect(answered == 0, f"{answered} streams answered before their body was complete")
    c.expect(rss_peak < budget, f"RSS {fmt_bytes(rss_peak)} over the stated worst case "
             f"{fmt_bytes(budget)}")
    c.expect(worst(health) < 1.0, f"admin /healthz meanwhile: {latency_text(health)}")
    c.expect(healthy, "not healthy afterwards")
    slots = conns + streams - conns + 1  # connections, further streams, the accept loop's
    figures = (f"{conns} connections x {per_conn} streams = {streams} streams ({slots} of "
               f"{limit} connection slots), each POST /api/v1/echo declaring {body_limit // 1024} KiB and sending "
               f"{(body_limit - 1024) // 1024} KiB, never finished: {sent / 1024 / 1024:.1f} MiB "
               f"sent through the flow-control windows, {held} API connections open; RSS "
               f"{fmt_bytes(rss0)} -> peak {fmt_bytes(rss_peak)}, stated worst case "
               f"{fmt_bytes(budget)}; admin /healthz {latency_text(health)}")
    return [Row("h2-unfinished-bodies", "every slot an HTTP/2 stream with a body just under the "
                "limit: RSS stays under the stated worst case", c.ok, figures, command,
                c.failures)]


# --- slow readers of a stream ------------------------------------------------------------------

def slow_stream_readers(command: str) -> list[Row]:
    """Clients that open a stream to /docs with a flow-control window of 0 and never send
    WINDOW_UPDATE: each connection gets GOAWAY and is closed within the send timeout + 1 tick
    + the 1 s GOAWAY grace; nothing spins meanwhile."""
    c = Claim()
    n, send_timeout = 64, 2.0
    env = {"POEM_API_SEND_TIMEOUT": f"{int(send_timeout)}s", "POEM_API_KEEP_ALIVE_TIMEOUT": "60s",
           "POEM_API_ACCESS_LOG": "false", "POEM_API_LOG": "warn"}
    budget = memory_budget({**env, "POEM_API_MAX_CONNECTIONS": str(n)})
    with Server(env) as srv:
        rss0 = srv.rss_bytes()
        t0 = time.monotonic()
        clients = []
        for _ in range(n):
            cl = H2Client(srv.api_port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
            cl.start("GET", "/docs")
            clients.append(cl)
        held = wait_for(lambda: api_connections(srv) == n, 5)
        cpu0 = srv.cpu_seconds()
        time.sleep(1.0)
        cpu = srv.cpu_seconds() - cpu0
        rss_peak = srv.rss_bytes()
        closed = [Background(cl.until_closed, send_timeout + 8) for cl in clients]
        for b in closed:
            b.join(send_timeout + 10)
        took = [b.result for b in closed]
        cut = time.monotonic() - t0
        gone = wait_for(lambda: api_connections(srv) == 0, 5)
        healthy = srv.healthy()
    data = sum(len(r["body"]) for cl in clients for r in cl.responses.values())
    goaways = sum(1 for cl in clients if cl.goaway is not None)
    closed_n = sum(1 for t in took if t is not None)
    bound = send_timeout + 1 + 1 + 2
    c.expect(held is not None, "test setup: not every connection was held")
    c.expect(data == 0, f"{data} bytes of data sent into windows of 0")
    c.expect(closed_n == n and goaways == n, f"{closed_n}/{n} closed, {goaways} with GOAWAY")
    c.expect(cut < bound + 1, f"the last closed {cut:.1f} s after the first opened (bound "
             f"{bound:.0f} s)")
    c.expect(cpu < 0.2, f"server CPU {cpu:.2f} s over 1 s while they were held")
    c.expect(rss_peak < budget, f"RSS {fmt_bytes(rss_peak)} over {fmt_bytes(budget)}")
    c.expect(gone is not None, "API connections did not return to 0")
    c.expect(healthy, "not healthy afterwards")
    figures = (f"{n} connections, window 0 (SETTINGS_INITIAL_WINDOW_SIZE 0, no WINDOW_UPDATE) "
               f"on GET /docs, send timeout {send_timeout:.0f} s: {data} data bytes sent; "
               f"{goaways}/{n} got GOAWAY, {closed_n}/{n} closed, the last {cut:.1f} s after the "
               f"first opened (bound {bound:.0f} s); server CPU {cpu:.2f} s over 1 s held; RSS "
               f"{fmt_bytes(rss0)} -> {fmt_bytes(rss_peak)} (stated worst case "
               f"{fmt_bytes(budget)})")
    return [Row("h2-slow-stream-readers", "a stream whose window stays shut has its connection "
                "closed within the send timeout", c.ok, figures, command, c.failures)]


PARTS = {"clients": real_clients, "zero-loss": zero_loss_stop, "rapid-reset": rapid_reset,
         "many-streams": many_streams, "bodies": bodies, "slow-readers": slow_stream_readers}


def check(command: str, parts: list[str] | None = None) -> list[Row]:
    rows: list[Row] = []
    for name in parts or list(PARTS):
        rows += PARTS[name](command)
    return rows


if __name__ == "__main__":
    import sys
    for row in check("reliability/run --only http2", sys.argv[1:] or None):
        print(row.result, row.check, row.figures)
        for f in row.notes:
            print("   ", f)

