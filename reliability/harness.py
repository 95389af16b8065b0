"""Runs the server under test and talks to it: shared by every reliability check.

Only 127.0.0.1 is ever a target. Every wait has a deadline, every loop a bound.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded before any fork: preexec_fn only calls it
# Server logs and tool reports of one run of the suite, kept for reading failures.
RUN_DIR = Path(tempfile.mkdtemp(prefix="reliability-"))


def scratch(name: str) -> Path:
    """A fresh directory under RUN_DIR."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=RUN_DIR))


def binary() -> str:
    """The server binary: $POEM_API_BIN, else the release build in this repo."""
    return os.environ.get("POEM_API_BIN") or str(REPO / "target/release/poem-api")


def _die_with_parent() -> None:
    # A server must not outlive the checker that started it (e.g. if the checker is killed).
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1; the server binds it a moment later.

    The server is a separate binary that takes its ports from the environment, so the port is
    picked here; Server.start retries with new ports if another process took it meanwhile.
    """
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float = 0.0


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
    """One request on a fresh connection (closed afterwards)."""
    t = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data,
                        time.monotonic() - t)
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, method: str = "GET", timeout: float = 10.0) -> Response:
    """Send bytes exactly as given, then parse one HTTP response (http.client does the parsing)."""
    t = time.monotonic()
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before taking everything; read what it said
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        body = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, body,
                        time.monotonic() - t)


def connect_outcome(port: int, timeout: float = 2.0) -> str:
    """What a new client sees: 'refused', or the status of GET / on a fresh connection, or the error."""
    try:
        s = socket.create_connection((HOST, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return f"connect-error:{type(e).__name__}"
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        r = http.client.HTTPResponse(s, method="GET")
        r.begin()
        r.read()
        return str(r.status)
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except (http.client.RemoteDisconnected, http.client.IncompleteRead):
        return "closed-without-response"
    except OSError as e:
        return f"error:{type(e).__name__}"
    finally:
        s.close()


PROM_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = PROM_LINE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        try:
            out.append((m.group(1), labels, float(m.group(3))))
        except ValueError:
            continue
    return out


class StartError(RuntimeError):
    pass


class Server:
    """One poem-api process on 127.0.0.1 with its own two ports and log file."""

    def __init__(self, env: dict[str, str] | None = None, name: str = "poem-api",
                 api_port: int | None = None, admin_port: int | None = None):
        self.extra_env = dict(env or {})
        self.name = name
        self.api_port = api_port
        self.admin_port = admin_port
        self.proc: subprocess.Popen | None = None
        self.log = scratch(name) / "server.log"
        self._fixed_ports = api_port is not None

    def _env(self) -> dict[str, str]:
        # Nothing from the caller's POEM_API_* settings leaks in: each check states its own.
        env = {k: v for k, v in os.environ.items() if not k.startswith("POEM_API_")}
        env.pop("RUST_LOG", None)
        env.update({
            "POEM_API_HOST": HOST,
            "POEM_API_PORT": str(self.api_port),
            "POEM_API_ADMIN_PORT": str(self.admin_port),
            "POEM_API_LOG_FORMAT": "json",
        })
        env.update(self.extra_env)
        return env

    def start(self, ready_timeout: float = 20.0) -> "Server":
        for attempt in range(3):
            if not self._fixed_ports:
                self.api_port, self.admin_port = free_port(), free_port()
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen([binary()], env=self._env(), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT,
                                             preexec_fn=_die_with_parent)
            try:
                self.wait_ready(ready_timeout)
                return self
            except StartError:
                in_use = "in use" in self.log_tail(20).lower()
                self.kill()
                if not in_use or self._fixed_ports or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"{self.name} exited with {self.proc.returncode} before ready:\n"
                                 + self.log_tail(20))
            try:
                if self.admin("GET", "/readyz", timeout=1.0).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise StartError(f"{self.name} not ready within {timeout}s:\n" + self.log_tail(20))

    # --- talking to it
    def api(self, method: str, path: str, **kw) -> Response:
        return request(self.api_port, method, path, **kw)

    def admin(self, method: str, path: str, **kw) -> Response:
        return request(self.admin_port, method, path, **kw)

    def url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.api_port}{path}"

    def healthy(self) -> bool:
        """Liveness 200 on the admin port and GET / 200 on the API port."""
        try:
            return (self.admin("GET", "/healthz", timeout=5).status == 200
                    and self.api("GET", "/", timeout=5).status == 200)
        except OSError:
            return False

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        return parse_metrics(self.admin("GET", "/metrics", timeout=5).body.decode())

    def metric_sum(self, name: str, **labels: str) -> float:
        return sum(v for n, lab, v in self.metrics()
                   if n == name and all(lab.get(k) == want for k, want in labels.items()))

    # --- the process
    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        fields_ = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields_[11]) + int(fields_[12])) / CLK_TCK  # utime + stime

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time (then returns None)."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.kill()
        return code

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Background:
    """Run a function on a thread and collect its result or exception."""

    def __init__(self, fn, *args, **kw):
        self.result = None
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, args=(fn, args, kw), daemon=True)
        self._t.start()

    def _run(self, fn, args, kw):
        try:
            self.result = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            self.error = e

    def join(self, timeout: float) -> bool:
        self._t.join(timeout)
        return not self._t.is_alive()


def sleep_until(t: float) -> None:
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


class Wrk:
    """wrk sending a steady stream of requests until stop(); its Lua script counts non-2xx."""

    def __init__(self, url: str, connections: int = 32, threads: int = 2, max_seconds: int = 120,
                 timeout_s: int = 5):
        self.proc = subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max_seconds}s", f"--timeout={timeout_s}s",
             "-s", str(HERE / "count.lua"), url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=_die_with_parent)

    def stop(self, timeout: float = 15.0) -> dict:
        """SIGINT ends the run; wrk then prints its summary (the Lua done() line)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise RuntimeError("wrk did not stop on SIGINT:\n" + out[-2000:])
        for line in out.splitlines():
            if line.startswith("WRK_JSON "):
                res = json.loads(line[len("WRK_JSON "):])
                res["socket_errors"] = res["connect"] + res["read"] + res["write"] + res["timeout"]
                res["failed"] = res["socket_errors"] + res["non2xx"]
                return res
        raise RuntimeError("wrk printed no summary:\n" + out[-2000:])


@dataclass
class Row:
    """One line of the results table: a claim, whether it held, the figures, how to reproduce."""
    check: str
    claim: str
    ok: bool
    figures: str
    command: str
    notes: list[str] = field(default_factory=list)

    @property
    def result(self) -> str:
        return "pass" if self.ok else "FAIL"


class Claim:
    """Collects the failed expectations of one claim instead of stopping at the first."""

    def __init__(self):
        self.failures: list[str] = []

    def expect(self, cond: bool, msg: str) -> bool:
        if not cond:
            self.failures.append(msg)
        return cond

    @property
    def ok(self) -> bool:
        return not self.failures


def repeat_runs(one_run, repeat: int) -> tuple[list[dict], list[str]]:
    """Runs `one_run` (returning a Claim and its figures) `repeat` times: every run's figures,
    and every failure prefixed with its run number."""
    runs, failures = [], []
    for i in range(repeat):
        claim, figures = one_run()
        runs.append(figures)
        failures += [f"run {i + 1}: {f}" for f in claim.failures]
    return runs, failures


def fmt_bytes(n: float) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"
