"""Zero-loss stop: SIGTERM a loaded server and lose nothing.

Timeline of one run (ts = SIGTERM, D = drain delay):

    ts-1.5  wrk starts: keep-alive connections sending GET / as fast as they are answered
    ts-0.5  a slow request (GET /api/v1/delay, ends at ts+D+2) and an SSE stream start
    ts      SIGTERM: /readyz must turn 503 at once, /healthz stay 200
    ts+D-1  wrk stops. In Kubernetes the drain delay is the time for traffic to stop arriving
            (endpoints removed, kube-proxy updated) before the listener closes, so the load stops
            inside it; responses during the drain carry `Connection: close`.
    ts+D-.5 a second slow request starts (still accepted: the listener is open until ts+D)
    ts+D    the server stops accepting
    ts+D+1  a new client must see `connection refused` (never a reset), the process still alive
            because of the two slow requests
    ts+D+2  both slow requests complete with 200, the stream has ended cleanly
    exit    code 0, no later than D + shutdown timeout after SIGTERM
"""

from __future__ import annotations

import http.client
import json
import signal
import time

from harness import (HOST, Background, Claim, Row, Server, Wrk, connect_outcome, repeat_runs,
                     sleep_until)

DRAIN = 3.0
SHUTDOWN_TIMEOUT = 5.0


def read_stream(port: int) -> dict:
    """Read an SSE stream to its end; 'clean' means every event was a well-formed Tick in order and
    the chunked body was properly terminated."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", "/api/v1/stream?count=100&interval_ms=100")
        r = conn.getresponse()
        events = 0
        err = ""
        try:
            while line := r.readline():
                if line.startswith(b"data:"):
                    tick = json.loads(line[5:])  # each event is a Tick, in order
                    if tick.get("seq") != events or not isinstance(tick.get("elapsed_ms"), int):
                        err = f"unexpected event {tick}"
                    events += 1
            clean = not err
        except (http.client.IncompleteRead, OSError, ValueError) as e:
            clean, err = False, f"{type(e).__name__}: {e}"
        return {"status": r.status, "events": events, "clean": clean, "error": err,
                "content_type": r.getheader("content-type", "")}
    finally:
        conn.close()


def one_run(connections: int = 32) -> tuple[Claim, dict]:
    c = Claim()
    srv = Server({
        "POEM_API_DRAIN_DELAY": f"{int(DRAIN * 1000)}ms",
        "POEM_API_SHUTDOWN_TIMEOUT": f"{int(SHUTDOWN_TIMEOUT * 1000)}ms",
        "POEM_API_ACCESS_LOG": "false",
        "POEM_API_LOG": "warn",
    }).start()
    fig: dict = {}
    wrk = None
    try:
        c.expect(srv.api("GET", "/").status == 200, "GET / before the test did not answer 200")
        wrk = Wrk(srv.url("/"), connections=connections, threads=2)
        ts = time.monotonic() + 1.5

        sleep_until(ts - 0.5)
        slow_a_ms = int((DRAIN + 2.5) * 1000)
        slow_a = Background(srv.api, "GET", f"/api/v1/delay/{slow_a_ms}", timeout=30)
        stream = Background(read_stream, srv.api_port)

        sleep_until(ts)
        before = srv.metric_sum("http_requests_total", route="/")
        srv.signal(signal.SIGTERM)
        ts = time.monotonic()  # the real moment, after the scrape

        # Readiness turns 503 at once; liveness stays 200.
        flip = None
        while time.monotonic() < ts + 1.0:
            if srv.admin("GET", "/readyz", timeout=1).status == 503:
                flip = time.monotonic() - ts
                break
            time.sleep(0.01)
        fig["readyz_503_after_s"] = flip
        c.expect(flip is not None, "/readyz did not turn 503 within 1 s of SIGTERM")
        c.expect(srv.admin("GET", "/healthz", timeout=2).status == 200,
                 "/healthz was not 200 while draining")
        during = srv.api("GET", "/", timeout=5)
        c.expect(during.status == 200 and during.headers.get("connection", "").lower() == "close",
                 f"a response while draining was {during.status} with "
                 f"Connection: {during.headers.get('connection')!r}, expected 200 + close")

        sleep_until(ts + DRAIN - 1.0)
        res = wrk.stop()
        wrk = None
        after = srv.metric_sum("http_requests_total", route="/")
        fig.update(requests=res["requests"], failed=res["failed"], non2xx=res["non2xx"],
                   socket_errors=res["socket_errors"], during_drain=int(after - before),
                   p99_ms=res["p99_us"] / 1000)
        c.expect(res["requests"] > 0, "wrk sent no request")
        c.expect(res["failed"] == 0, f"wrk saw failures: {res}")
        c.expect(after - before > 0, "no request was answered during the drain delay")

        sleep_until(ts + DRAIN - 0.5)
        slow_b = Background(srv.api, "GET", "/api/v1/delay/2500", timeout=30)

        # After the listener closed: refused, not reset.
        sleep_until(ts + DRAIN + 1.0)
        alive = srv.alive()
        outcome = connect_outcome(srv.api_port)
        fig["after_close"] = outcome
        c.expect(outcome == "refused", f"a new connection after the listener closed got {outcome!r}")
        c.expect(alive, "the process had exited before the in-flight requests completed")

        code = srv.wait(DRAIN + SHUTDOWN_TIMEOUT + 10)
        exit_s = time.monotonic() - ts
        fig.update(exit_code=code, exit_s=round(exit_s, 2))
        c.expect(code == 0, f"exit code {code}, expected 0")
        c.expect(exit_s <= DRAIN + SHUTDOWN_TIMEOUT,
                 f"exited {exit_s:.2f} s after SIGTERM, bound is {DRAIN + SHUTDOWN_TIMEOUT} s")

        for name, bg in (("slow request started before SIGTERM", slow_a),
                         ("slow request started during the drain", slow_b)):
            bg.join(5)
            ok = bg.error is None and bg.result is not None and bg.result.status == 200
            c.expect(ok, f"{name}: {bg.error or (bg.result and bg.result.status)}")
        stream.join(5)
        s = stream.result or {}
        fig["stream"] = s
        c.expect(stream.error is None and s.get("status") == 200 and s.get("clean")
                 and 0 < s.get("events", 0) < 100,
                 f"SSE stream did not end cleanly on drain: {stream.error or s}")
    finally:
        if wrk is not None:
            wrk.stop()
        if srv.alive():
            srv.kill()
            c.expect(False, "server had to be killed")
    if not c.ok:
        c.failures.append("server log tail:\n" + srv.log_tail(10))
    return c, fig


def check(repeat: int, command: str) -> list[Row]:
    runs, failures = repeat_runs(one_run, repeat)
    total = sum(r.get("requests", 0) for r in runs)
    worst_failed = max((r.get("failed", 0) for r in runs), default=0)
    min_drain = min((r.get("during_drain", 0) for r in runs), default=0)
    exit_max = max((r.get("exit_s", 0) or 0 for r in runs), default=0)
    flip_max = max((r.get("readyz_503_after_s") or 0 for r in runs), default=0)
    counts = sorted(r.get("stream", {}).get("events", 0) for r in runs)
    events = f"{counts[0]}-{counts[-1]}" if counts and counts[0] != counts[-1] else str(counts[0] if counts else 0)
    figures = (f"{repeat} run(s), {total} requests, worst run {worst_failed} failed "
               f"(non-2xx + connect/read/write/timeout errors); >= {min_drain} answered during "
               f"each drain; readyz 503 within {flip_max * 1000:.0f} ms; after close: "
               f"{', '.join(sorted({str(r.get('after_close')) for r in runs}))}; slow requests 200, "
               f"SSE stream ended cleanly after {events} events; exit 0 within {exit_max:.2f} s "
               f"(bound {DRAIN + SHUTDOWN_TIMEOUT:.0f} s = drain {DRAIN:.0f} s + shutdown "
               f"{SHUTDOWN_TIMEOUT:.0f} s)")
    return [Row("zero-loss-stop", "SIGTERM under load loses no request", not failures, figures,
                command, failures)]
