"""The serving core under attack: silent connections, slow readers, a blocked stdout, 422
amplification, a CPU flood, a failed listener, and every limit at once.

Each part starts its own server with small, stated limits so that they are reached quickly; the
defaults differ only in size, not in mechanism. Every wait has a deadline, every loop a bound.
"""

from __future__ import annotations

import csv
import ctypes
import fcntl
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import tempfile
import termios
import threading
import time
from pathlib import Path

from harness import (HERE, HOST, Claim, Row, Server, StartError, _die_with_parent, binary,
                     fmt_bytes, free_port, request, scratch)

KiB = 1024
MiB = 1024 * 1024


def memory_budget(env: dict[str, str]) -> int:
    """The worst-case memory the server states for the limits in `env`, in bytes: what
    `poem-api --memory-budget` prints (`poem_api::server::MemoryBudget`)."""
    out = subprocess.run([binary(), "--memory-budget"], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return int(json.loads(out)["total"])


# --- helpers -----------------------------------------------------------------------------------

def probe(srv: Server, path: str = "/healthz", timeout: float = 2.0) -> float | None:
    """Seconds for one admin request answered 200, None if it failed or timed out."""
    try:
        r = request(srv.admin_port, "GET", path, timeout=timeout)
        return r.elapsed if r.status == 200 else None
    except OSError:
        return None


def probe_series(srv: Server, seconds: float, interval: float = 0.05,
                 timeout: float = 2.0) -> list[float | None]:
    """/healthz every `interval` for `seconds`: each latency, None for a failure."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(probe(srv, timeout=timeout))
        time.sleep(interval)
    return out


def latency_text(samples: list[float | None]) -> str:
    ok = sorted(s for s in samples if s is not None)
    failed = len(samples) - len(ok)
    if not ok:
        return f"{len(samples)} probes, all failed"
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))]
    return (f"{len(samples)} probes: p50 {statistics.median(ok) * 1000:.1f} ms, p99 "
            f"{p99 * 1000:.1f} ms, max {ok[-1] * 1000:.1f} ms, {failed} failed (2 s timeout)")


def worst(samples: list[float | None]) -> float:
    """The slowest probe, a failure counting as infinitely slow."""
    return max((float("inf") if s is None else s for s in samples), default=float("inf"))


def api_connections(srv: Server) -> float | None:
    try:
        return srv.metric_sum("http_connections_open", listener="api")
    except OSError:
        return None


def wait_for(cond, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until cond() held, None if it did not within `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    return None


def flood(url: str, seconds: int, connections: int, method: str = "GET",
          body: bytes | None = None) -> subprocess.Popen:
    """wrk for `seconds` against url (count.lua: method and body from the environment)."""
    env = dict(os.environ, FLOOD_METHOD=method)
    if body is not None:
        f = tempfile.NamedTemporaryFile(dir=scratch("flood"), delete=False, suffix=".json")
        f.write(body)
        f.close()
        env["FLOOD_BODY_FILE"] = f.name
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout=5s", "-s",
         str(HERE / "count.lua"), url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        preexec_fn=_die_with_parent)


def flood_result(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line[len("WRK_JSON "):])
    return {"requests": 0, "error": out[-500:]}


def slow_reader(port: int, path: str = "/docs", pipelined: int = 2) -> socket.socket:
    """A client with a 4 KiB receive buffer that sends `pipelined` GETs and never reads."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.settimeout(5)
    s.connect((HOST, port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() * pipelined)
    return s


def bad_tags_body() -> tuple[bytes, int]:
    """{"message":"x","tags":[1,1,...]} just under the 64 KiB body limit; every tag invalid."""
    n = 32_000
    return ('{"message":"x","tags":[' + ",".join(["1"] * n) + "]}").encode(), n


# --- silent connections at the limit -----------------------------------------------------------

def silent_connections(command: str) -> list[Row]:
    """The connection limit filled with connections that never send a byte: they are closed at
    the header-read timeout (not the keep-alive one), so a normal client waits at most that."""
    c = Claim()
    limit, header_read, keep_alive = 256, 2.0, 60.0
    env = {"POEM_API_MAX_CONNECTIONS": str(limit),
           "POEM_API_HEADER_READ_TIMEOUT": f"{int(header_read)}s",
           "POEM_API_KEEP_ALIVE_TIMEOUT": f"{int(keep_alive)}s",
           "POEM_API_ACCESS_LOG": "false", "POEM_API_LOG": "warn"}
    with Server(env) as srv:
        t0 = time.monotonic()
        silent = [socket.create_connection((HOST, srv.api_port), timeout=5) for _ in range(limit)]
        full = wait_for(lambda: api_connections(srv) == limit, 5)
        c.expect(full is not None, f"the {limit} silent connections were not all accepted "
                 f"(gauge {api_connections(srv)})")
        health = probe(srv)
        # A normal client: waits in the backlog until the silent ones are closed.
        t1 = time.monotonic()
        try:
            r = request(srv.api_port, "GET", "/", timeout=header_read + 6)
            served, waited = r.status, time.monotonic() - t1
        except OSError as e:
            served, waited = type(e).__name__, time.monotonic() - t1
        closed_at: list[float] = []
        for s in silent:
            s.settimeout(max(0.01, t0 + header_read + 5 - time.monotonic()))
            try:
                if s.recv(1) == b"":
                    closed_at.append(time.monotonic() - t0)
            except ConnectionResetError:
                closed_at.append(time.monotonic() - t0)
            except OSError:
                pass
            s.close()
        c.expect(served == 200, f"a normal client got {served} after {waited:.1f} s")
        c.expect(waited < header_read + 3, f"a normal client waited {waited:.1f} s (header-read "
                 f"timeout {header_read:.0f} s, keep-alive {keep_alive:.0f} s)")
        c.expect(len(closed_at) == limit, f"{len(closed_at)}/{limit} silent connections closed "
                 f"by the server within {header_read + 5:.0f} s")
        c.expect(health is not None and health < 1, f"admin /healthz meanwhile: {health}")
        c.expect(srv.healthy(), "not healthy afterwards")
    last = (f", the last {max(closed_at):.1f} s after connecting" if closed_at else "")
    figures = (f"{limit} connections that never send a byte (= limit; header-read timeout "
               f"{header_read:.0f} s, keep-alive {keep_alive:.0f} s): a normal GET / got {served} "
               f"after {waited:.1f} s; {len(closed_at)}/{limit} closed by the server within "
               f"{header_read + 5:.0f} s{last}; admin /healthz meanwhile "
               + (f"{health * 1000:.0f} ms" if health is not None else "failed"))
    return [Row("silent-connections", "connections that never send a byte are closed at the "
                "header-read timeout: a full limit delays others by that much only", c.ok,
                figures, command, c.failures)]


# --- slow readers ------------------------------------------------------------------------------

def slow_readers(command: str, n: int = 200) -> list[Row]:
    """slowhttptest -X: n connections that read /docs (pipelined twice) at a trickle. The server
    must neither spin nor hold a response copy per connection, and cuts them at the send
    timeout; the admin port answers meanwhile."""
    c = Claim()
    send_timeout, keep_alive = 5.0, 1.0
    env = {"POEM_API_SEND_TIMEOUT": f"{int(send_timeout)}s",
           # The old core's spin began once the keep-alive timeout had passed.
           "POEM_API_KEEP_ALIVE_TIMEOUT": f"{int(keep_alive)}s",
           "POEM_API_ACCESS_LOG": "false", "POEM_API_LOG": "warn"}
    # The stated worst case with n connections open.
    budget = memory_budget({**env, "POEM_API_MAX_CONNECTIONS": str(n)})
    out = scratch("slowhttptest") / "slowread"
    with Server(env) as srv:
        for _ in range(20):
            srv.api("GET", "/docs")  # warm-up: the page is built (or cached) once
        rss0 = srv.rss_bytes()
        # Reads 32 bytes every 10 s with a 512-1024 byte window: slower than the send timeout,
        # so each connection sees no progress for longer than it. 30 s at most.
        tool = subprocess.Popen(
            ["slowhttptest", "-X", "-c", str(n), "-r", str(n), "-k", "2", "-n", "10", "-z", "32",
             "-w", "512", "-y", "1024", "-l", "30", "-p", "3", "-g", "-o", str(out),
             "-u", srv.url("/docs")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        t0 = time.monotonic()
        peak_open = 0.0
        rss_peak = rss0
        cpu0, cpu_t0 = srv.cpu_seconds(), time.monotonic()
        cpu_window = None
        health: list[float | None] = []
        while time.monotonic() - t0 < send_timeout + 12:
            open_ = api_connections(srv) or 0.0
            peak_open = max(peak_open, open_)
            rss_peak = max(rss_peak, srv.rss_bytes())
            health.append(probe(srv))
            elapsed = time.monotonic() - t0
            # CPU while they are held: from 1.5 s (every connection open, keep-alive passed)
            # to just before the send timeout.
            if cpu_window is None and elapsed >= 1.5:
                cpu0, cpu_t0, cpu_window = srv.cpu_seconds(), time.monotonic(), "started"
            if cpu_window == "started" and elapsed >= send_timeout - 0.5:
                cpu_window = (srv.cpu_seconds() - cpu0, time.monotonic() - cpu_t0)
            if elapsed > send_timeout and open_ == 0:
                break
            time.sleep(0.25)
        cut_after = time.monotonic() - t0
        still_open = api_connections(srv)
        tool.send_signal(signal.SIGINT)
        try:
            tool.wait(10)
        except subprocess.TimeoutExpired:
            tool.kill()
            tool.wait(5)
        healthy = srv.healthy()
    cpu, window = cpu_window if isinstance(cpu_window, tuple) else (float("nan"), 0.0)
    closed = closed_by_tool(out.with_suffix(".csv"))
    c.expect(peak_open >= n * 0.9, f"only {peak_open:.0f}/{n} slow readers were connected")
    c.expect(window > 0 and cpu < 0.2 * window,
             f"server CPU {cpu:.2f} s over {window:.1f} s while {n} slow readers held /docs")
    c.expect(rss_peak < budget, f"RSS peaked at {fmt_bytes(rss_peak)}, over the stated worst case "
             f"{fmt_bytes(budget)} for {n} connections")
    c.expect(still_open == 0, f"{still_open} slow readers still connected {cut_after:.1f} s in "
             f"(send timeout {send_timeout:.0f} s)")
    c.expect(worst(health) < 1.0, f"admin /healthz meanwhile: {latency_text(health)}")
    c.expect(healthy, "not healthy afterwards")
    figures = (f"{n} slowhttptest -X connections on /docs (2 pipelined, window 512-1024 B, 32 B "
               f"read every 10 s), send timeout {send_timeout:.0f} s: peak {peak_open:.0f} open; "
               f"server CPU {cpu:.2f} s over {window:.1f} s while held; RSS {fmt_bytes(rss0)} -> "
               f"peak {fmt_bytes(rss_peak)} (stated worst case for {n} connections "
               f"{fmt_bytes(budget)}); "
               + (f"all cut {cut_after:.1f} s after the attack began" if still_open == 0 else
                  f"{still_open:.0f} still open {cut_after:.1f} s in")
               + (f" ({closed} closed as seen by slowhttptest)" if closed is not None else "")
               + f"; admin /healthz {latency_text(health)}")
    return [Row("slow-readers", f"{n} slow readers on /docs: no spin, memory within the stated "
                "worst case, cut at the send timeout", c.ok, figures, command, c.failures)]


def closed_by_tool(csv_path: Path) -> int | None:
    """The largest 'closed' count slowhttptest recorded (its CSV: seconds,closed,pending,...)."""
    try:
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        return max(int(r["closed"]) for r in rows) if rows else None
    except (OSError, KeyError, ValueError):
        return None


# --- blocked stdout ----------------------------------------------------------------------------

class PipedServer(Server):
    """A server whose stdout is a pipe this process never reads (until `drain`)."""

    def start(self, ready_timeout: float = 20.0) -> "PipedServer":
        for attempt in range(3):
            self.api_port, self.admin_port = free_port(), free_port()
            self.proc = subprocess.Popen([binary()], env=self._env(),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            try:
                self.wait_ready(ready_timeout)
                return self
            except StartError:
                self.kill()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def pipe_bytes(self) -> int:
        buf = fcntl.ioctl(self.proc.stdout.fileno(), termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, "little")

    def drain(self) -> "Drain":
        return Drain(self.proc.stdout)


class Drain:
    """Reads a pipe on a thread from now on, keeping every line."""

    def __init__(self, pipe):
        self.lines: list[bytes] = []
        self._t = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self._t.start()

    def _run(self, pipe):
        for line in pipe:
            self.lines.append(line)

    def events(self) -> list[dict]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def join(self, timeout: float) -> None:
        self._t.join(timeout)


def fill_pipe(srv: PipedServer, seconds: int = 3) -> dict:
    """wrk on an access-logged 404 with a 900-byte path (~1.1 KB per log line) for `seconds`."""
    proc = flood(srv.url("/nope/" + "a" * 900), seconds, connections=4)
    return flood_result(proc, seconds + 15)


def blocked_stdout(command: str) -> list[Row]:
    c = Claim()
    shutdown = 2.0
    env = {"POEM_API_SHUTDOWN_TIMEOUT": f"{int(shutdown)}s", "POEM_API_DRAIN_DELAY": "0s"}
    dropped_name = "poem_api_log_lines_dropped_total"

    # 1. Full and never read: probes, metrics, the API and SIGTERM.
    srv = PipedServer(env, name="blocked-stdout").start()
    try:
        load = fill_pipe(srv)
        in_pipe = srv.pipe_bytes()
        c.expect(in_pipe >= 48 * KiB, f"test setup: only {in_pipe} bytes in the stdout pipe")
        health = probe_series(srv, 2.0, interval=0.1)
        metrics_ok = probe(srv, "/metrics")
        readyz_ok = probe(srv, "/readyz")
        try:
            api_status = srv.api("GET", "/", timeout=2).status
        except OSError as e:
            api_status = type(e).__name__
        try:
            dropped = srv.metric_sum(dropped_name)
        except OSError:
            dropped = None
        t = time.monotonic()
        srv.signal(signal.SIGTERM)
        code = srv.wait(shutdown + 5)
        took = time.monotonic() - t
    finally:
        srv.kill()
    c.expect(worst(health) < 1.0, f"admin /healthz with stdout full: {latency_text(health)}")
    c.expect(metrics_ok is not None and readyz_ok is not None,
             f"/metrics {metrics_ok}, /readyz {readyz_ok} with stdout full")
    c.expect(api_status == 200, f"GET / with stdout full: {api_status}")
    c.expect(bool(dropped), f"{dropped_name} {dropped} with stdout full")
    c.expect(code == 0, f"SIGTERM with stdout full: exit {code} after {took:.1f} s "
             f"(None: still running, killed)")

    # 2. The writer recovers: one summary line, and the metric agrees with it.
    srv = PipedServer(env, name="blocked-stdout-recovery").start()
    try:
        fill_pipe(srv, seconds=2)
        drain = srv.drain()
        summary = None
        end = time.monotonic() + 10
        while summary is None and time.monotonic() < end:
            try:
                srv.api("GET", "/", timeout=2)
            except OSError:
                pass
            summary = next((e for e in drain.events() if e.get("message") == "log lines dropped"),
                           None)
            time.sleep(0.2)
        try:
            total = srv.metric_sum(dropped_name)
        except OSError:
            total = None
        srv.stop(shutdown + 5)
        drain.join(5)
        longest = max((len(x) for x in drain.lines), default=0)
    finally:
        srv.kill()
    c.expect(summary is not None and (summary.get("dropped") or 0) > 0,
             f"summary line after stdout drained: {summary}")
    c.expect(summary is None or (total or 0) >= (summary.get("dropped") or 0),
             f"{dropped_name} {total} below the summary's {summary and summary.get('dropped')}")
    c.expect(longest <= 16 * KiB, f"a {longest}-byte stdout line")

    figures = (f"stdout a 64 KiB pipe nobody reads, {in_pipe} bytes waiting; wrk 3 s on an "
               f"access-logged 404: {load.get('requests', 0)} requests answered; admin /healthz "
               f"{latency_text(health)}; /metrics "
               + ("200" if metrics_ok is not None else "failed")
               + f", GET / {api_status}; {dropped_name} {dropped}; SIGTERM: "
               + (f"exit {code} after {took:.1f} s" if code is not None else
                  f"still running {took:.1f} s later (killed)")
               + f" (bound drain 0 + shutdown {shutdown:.0f} s + 5 s); after draining: summary "
               + (f"dropped={summary.get('dropped')}, metric {total}" if summary else "line missing")
               + f", longest line {longest} B")
    return [Row("blocked-stdout", "a full stdout pipe stops neither the API, the probes nor "
                "SIGTERM; dropped lines are counted", c.ok, figures, command, c.failures)]


# --- 422 amplification -------------------------------------------------------------------------

def unprocessable(command: str) -> list[Row]:
    c = Claim()
    bad, n_tags = bad_tags_body()
    # A valid echo of about the same size (an unknown field pads it): the parse cost alone.
    valid = json.dumps({"message": "x", "pad": "a" * 60000}).encode()
    env = {"POEM_API_ACCESS_LOG": "false", "POEM_API_LOG": "warn"}
    n = 200
    with Server(env) as srv:
        def cost(body: bytes) -> tuple[float, int, bytes]:
            conn = http.client.HTTPConnection(HOST, srv.api_port, timeout=10)
            cpu0 = srv.cpu_seconds()
            for _ in range(n):
                conn.request("POST", "/api/v1/echo", body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
            conn.close()
            return (srv.cpu_seconds() - cpu0) / n, r.status, data

        cost(valid)  # warm-up
        valid_cpu, valid_status, _ = cost(valid)
        bad_cpu, bad_status, body = cost(bad)
        # The probes while four connections send nothing but such bodies.
        proc = flood(srv.url("/api/v1/echo"), 5, connections=4, method="POST", body=bad)
        time.sleep(0.5)
        health = probe_series(srv, 4.0, interval=0.1)
        load = flood_result(proc, 20)
        healthy = srv.healthy()
    problem = {}
    try:
        problem = json.loads(body)
    except ValueError:
        pass
    errors = problem.get("errors") or []
    c.expect(valid_status == 200, f"the padded valid echo got {valid_status}")
    c.expect(bad_status == 422, f"the bad body got {bad_status}")
    c.expect(len(body) <= 16 * KiB, f"a {len(body)}-byte 422 body")
    c.expect(len(errors) <= 32, f"{len(errors)} entries in errors")
    c.expect((problem.get("error_count") or 0) >= n_tags,
             f"error_count {problem.get('error_count')} (expected >= {n_tags})")
    bound = 10 * valid_cpu + 0.001
    c.expect(bad_cpu <= bound, f"{bad_cpu * 1000:.2f} ms of CPU per 422, bound "
             f"{bound * 1000:.2f} ms (10x a valid echo of the same size + 1 ms)")
    c.expect(worst(health) < 1.0, f"admin /healthz under the 422 flood: {latency_text(health)}")
    c.expect(healthy, "not healthy afterwards")
    figures = (f"{len(bad)}-byte body with {n_tags} invalid tags: 422 of {len(body)} bytes, "
               f"{len(errors)} errors listed, error_count {problem.get('error_count')}; server CPU "
               f"{bad_cpu * 1000:.2f} ms per 422 vs {valid_cpu * 1000:.2f} ms per valid echo of "
               f"{len(valid)} bytes ({n} each, one keep-alive connection); 5 s flood of them over "
               f"4 connections ({load.get('requests', 0)} requests): admin /healthz "
               f"{latency_text(health)}")
    return [Row("422-amplification", "a 65 KB body of invalid fields costs about what a valid one "
                "does, and its 422 is small", c.ok, figures, command, c.failures)]


# --- probes under an API CPU flood -------------------------------------------------------------

def cpu_flood(command: str) -> list[Row]:
    """wrk with 64 connections sending the costliest requests there are (65 KB bodies of invalid
    fields, which cost the old core 6.5 ms of CPU each, and GET /docs, 1.6 MB a response): the
    admin listener, on its own thread, still answers promptly. On a shared runtime the probe
    waits behind every queued API task."""
    c = Claim()
    env = {"POEM_API_ACCESS_LOG": "false", "POEM_API_LOG": "warn"}
    seconds = 8
    bad, _ = bad_tags_body()
    with Server(env) as srv:
        quiet = probe_series(srv, 1.0, interval=0.05)
        invalid = flood(srv.url("/api/v1/echo"), seconds, connections=48, method="POST", body=bad)
        docs = flood(srv.url("/docs"), seconds, connections=16)
        time.sleep(1.0)
        cpu0, t0 = srv.cpu_seconds(), time.monotonic()
        under = probe_series(srv, seconds - 3, interval=0.05)
        cpu = (srv.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        r_invalid, r_docs = flood_result(invalid, 20), flood_result(docs, 20)
        healthy = srv.healthy()
    ok = sorted(s for s in under if s is not None)
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))] if ok else float("inf")
    c.expect(r_invalid.get("requests", 0) >= 100 and cpu > 0.1,
             f"test setup: a weak flood ({r_invalid.get('requests', 0)} requests, server at "
             f"{cpu:.2f} cores)")
    c.expect(len(ok) == len(under), f"{len(under) - len(ok)} probes failed under the flood")
    # Wide bounds: wrk runs on the same two cores, so even a thread of its own waits for one.
    p50 = statistics.median(ok) if ok else float("inf")
    c.expect(p50 < 0.05, f"/healthz median {p50 * 1000:.0f} ms under the flood (bound 50 ms)")
    c.expect(p99 < 0.25, f"/healthz p99 {p99 * 1000:.0f} ms under the flood (bound 250 ms)")
    c.expect(worst(under) < 1.0, f"slowest /healthz {worst(under) * 1000:.0f} ms (bound 1 s)")
    c.expect(healthy, "not healthy afterwards")
    figures = (f"wrk for {seconds} s, 48 connections POSTing 65 KB bodies of invalid fields + 16 "
               f"on GET /docs: {r_invalid.get('requests', 0)} + {r_docs.get('requests', 0)} "
               f"requests, server at {cpu:.2f} cores; admin /healthz idle {latency_text(quiet)}; "
               f"under the flood {latency_text(under)}")
    return [Row("probes-under-cpu-flood", "the admin port answers promptly while the API port is "
                "flooded with CPU-heavy requests", c.ok, figures, command, c.failures)]


# --- a failed listener -------------------------------------------------------------------------

_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438  # x86_64


def listening_fd(pid: int, port: int) -> int:
    """The fd number, in process pid, of the socket in LISTEN state on `port`: its inode from
    /proc/<pid>/net/tcp matched against the targets of /proc/<pid>/fd/*."""
    inode = None
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A":
            inode = f[9]
    if inode is None:
        raise RuntimeError(f"no LISTEN socket on port {port}")
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                return int(fd)
        except OSError:
            continue
    raise RuntimeError(f"no fd of {pid} is socket:[{inode}]")


def shut_down_listener(pid: int, fd: int) -> None:
    """shutdown(SHUT_RD) on a duplicate of another process's listening socket (pidfd_getfd,
    needs root): that process's accept(2) then fails with EINVAL."""
    pidfd = _LIBC.syscall(SYS_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        raise OSError(ctypes.get_errno(), "pidfd_open")
    try:
        dup = _LIBC.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if dup < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd (needs root)")
    finally:
        os.close(pidfd)
    try:
        if _LIBC.shutdown(dup, socket.SHUT_RD) != 0:
            raise OSError(ctypes.get_errno(), "shutdown")
    finally:
        os.close(dup)


def names(event: dict, word: str) -> bool:
    """Whether a field of a log event (not where it was logged from) holds `word` as a word."""
    return any(isinstance(v, str) and word in re.split(r"[^a-z0-9]+", v.lower())
               for k, v in event.items() if k not in ("target", "module_path", "filename"))


def failed_listener(command: str) -> list[Row]:
    c = Claim()
    env = {"POEM_API_SHUTDOWN_TIMEOUT": "2s", "POEM_API_DRAIN_DELAY": "0s"}
    with Server(env, name="failed-listener") as srv:
        fd = listening_fd(srv.pid, srv.api_port)
        before = probe(srv, "/readyz")
        t0 = time.monotonic()
        shut_down_listener(srv.pid, fd)
        time.sleep(0.3)
        try:
            readiness = srv.admin("GET", "/readyz", timeout=2).status
        except OSError as e:
            readiness = type(e).__name__
        code = srv.wait(10)
        took = time.monotonic() - t0
        alive = srv.alive()
        log = srv.log.read_text(errors="replace").splitlines()
    events = []
    for line in log:
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    accept_failures = sum(1 for e in events if e.get("message") == "accept failed")
    named = [e for e in events if e.get("level") in ("ERROR", "WARN") and names(e, "api")]
    c.expect(before is not None, "ready before the failure")
    c.expect(readiness in (503, "ConnectionRefusedError"),
             f"/readyz {readiness} 0.3 s after the API listener failed")
    c.expect(code == 1, f"exit {code} (None: still running {took:.0f} s later)")
    c.expect(bool(named), "no error line names the api listener")
    figures = (f"API listening socket shut down (SHUT_RD) from outside through pidfd_getfd: "
               f"/readyz {readiness} 0.3 s later; "
               + (f"exit {code} after {took:.1f} s" if code is not None else
                  f"still running {took:.0f} s later, {accept_failures} 'accept failed' warnings")
               + "; " + (f"logged: {named[0].get('message')!r}" if named else
                         "no log line names the listener"))
    if alive:
        figures += " (killed)"
    return [Row("failed-listener", "a listener whose accept fails turns readiness off and the "
                "process exits 1", c.ok, figures, command, c.failures)]


# --- every limit at once -----------------------------------------------------------------------

def all_limits(command: str) -> list[Row]:
    """Every connection slot held in its most expensive phase at once: heads just under the
    header limit, bodies just under the body limit, slow readers of /docs, and every stream
    slot; RSS stays under the stated worst case for these limits."""
    c = Claim()
    limit, streams = 256, 64
    header_limit, body_limit = 32 * KiB, 64 * KiB
    env = {"POEM_API_MAX_CONNECTIONS": str(limit), "POEM_API_MAX_STREAMS": str(streams),
           "POEM_API_HEADER_LIMIT": "32KiB", "POEM_API_BODY_LIMIT": "64KiB",
           "POEM_API_HEADER_READ_TIMEOUT": "30s", "POEM_API_REQUEST_TIMEOUT": "30s",
           "POEM_API_SEND_TIMEOUT": "30s", "POEM_API_KEEP_ALIVE_TIMEOUT": "30s",
           "POEM_API_ACCESS_LOG": "false", "POEM_API_LOG": "warn"}
    budget = memory_budget(env)
    share = (limit - streams) // 3
    socks: list[socket.socket] = []
    with Server(env) as srv:
        rss0 = srv.rss_bytes()
        try:
            for _ in range(share):  # a head 1 KiB short of the limit, never finished
                s = socket.create_connection((HOST, srv.api_port), timeout=5)
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
                          + b"a" * (header_limit - 1024))
                socks.append(s)
            for _ in range(share):  # a body 1 KiB short of its declared length and the limit
                s = socket.create_connection((HOST, srv.api_port), timeout=5)
                s.sendall(b"POST /api/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                          % body_limit + b" " * (body_limit - 1024))
                socks.append(s)
            for _ in range(limit - streams - 2 * share):  # slow readers of /docs
                socks.append(slow_reader(srv.api_port))
            for _ in range(streams):  # every stream slot, never read
                s = slow_reader(srv.api_port, "/api/v1/stream?count=1000&interval_ms=10", 1)
                socks.append(s)
            full = wait_for(lambda: api_connections(srv) == limit, 10)
            held = api_connections(srv)
            rss_peak = srv.rss_bytes()
            for _ in range(12):  # 3 s: let buffers fill and streams queue events
                time.sleep(0.25)
                rss_peak = max(rss_peak, srv.rss_bytes())
            health = probe(srv)
        finally:
            for s in socks:
                s.close()
        healthy = wait_for(srv.healthy, 10, step=0.5) is not None
    c.expect(full is not None, f"test setup: {held} of {limit} connections held")
    c.expect(rss_peak < budget, f"RSS {fmt_bytes(rss_peak)} over the stated worst case "
             f"{fmt_bytes(budget)}")
    c.expect(health is not None and health < 1, f"admin /healthz while full: {health}")
    c.expect(healthy, "not healthy afterwards")
    figures = (f"{limit} connections (= limit): {share} heads of {header_limit // KiB - 1} KiB "
               f"unfinished, {share} bodies of {body_limit // KiB - 1} KiB unfinished, "
               f"{limit - streams - 2 * share} slow readers of /docs, {streams} unread streams "
               f"(= stream limit); RSS {fmt_bytes(rss0)} -> peak {fmt_bytes(rss_peak)}, stated "
               f"worst case {fmt_bytes(budget)} (`poem-api --memory-budget`); admin /healthz "
               + (f"{health * 1000:.0f} ms" if health is not None else "failed"))
    return [Row("all-limits-at-once", "every limit reached at once: RSS stays under the stated "
                "worst case", c.ok, figures, command, c.failures)]


PARTS = {"silent": silent_connections, "slow-readers": slow_readers,
         "blocked-stdout": blocked_stdout, "422": unprocessable, "cpu-flood": cpu_flood,
         "failed-listener": failed_listener, "all-limits": all_limits}


def check(command: str, parts: list[str] | None = None) -> list[Row]:
    """Every part, or those named (keys of PARTS; `SERVING_PARTS=a,b` in the environment)."""
    rows: list[Row] = []
    for name in parts or list(PARTS):
        rows += PARTS[name](command)
    return rows
