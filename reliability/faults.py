"""Fault injection: the configured error rate and delay bound hold, on API routes only."""

from __future__ import annotations

import http.client
import math
import statistics
import threading
import time

from harness import HOST, Claim, Row, Server

PATH = "/api/v1/headers"
SIGMAS = 5.0  # acceptance band: a correct server falls outside it about once in 1.7 million runs


def hammer(port: int, path: str, n: int, workers: int) -> list[tuple[int, str, float]]:
    """n GETs spread over `workers` keep-alive connections: (status, content-type, seconds)."""
    out: list[tuple[int, str, float]] = []
    lock = threading.Lock()
    per = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]

    def worker(count: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        mine = []
        for _ in range(count):
            t = time.monotonic()
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            mine.append((r.status, r.getheader("content-type", ""), time.monotonic() - t))
            if r.will_close:
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.close()
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return out


def error_rate(rate: float, n: int) -> tuple[Claim, str]:
    c = Claim()
    env = {"POEM_API_FAULT_ERROR_RATE": str(rate), "POEM_API_ACCESS_LOG": "false",
           "POEM_API_LOG": "error"}
    with Server(env) as srv:
        res = hammer(srv.api_port, PATH, n, workers=4)
        c.expect(len(res) == n, f"{len(res)}/{n} requests completed")
        errors = [r for r in res if r[0] == 500]
        other = [r for r in res if r[0] not in (200, 500)]
        k = len(errors)
        mean, sd = n * rate, math.sqrt(n * rate * (1 - rate))
        lo, hi = math.floor(mean - SIGMAS * sd), math.ceil(mean + SIGMAS * sd)
        c.expect(lo <= k <= hi, f"{k} injected errors in {n}, expected {lo}..{hi}")
        c.expect(not other, f"statuses other than 200/500: {other[:3]}")
        c.expect(all(ct.startswith("application/problem+json") for _, ct, _ in errors),
                 "an injected 500 was not application/problem+json")
        # Counted in metrics (that is what alerts see); which route label they carry is shown.
        series = [(lab.get("route"), v) for n, lab, v in srv.metrics()
                  if n == "http_requests_total" and lab.get("listener") == "api"
                  and lab.get("status") == "5xx"]
        metric = sum(v for _, v in series)
        routes = ", ".join(sorted({str(r) for r, _ in series})) or "-"
        c.expect(metric == k, f"metrics count {metric:.0f} API 5xx, clients saw {k}")
        doc = srv.api("GET", "/openapi.json").status
        c.expect(doc == 200, f"GET /openapi.json answered {doc}: the document got a fault too")
        admin_ok = sum(srv.admin("GET", "/healthz").status == 200 for _ in range(100))
        c.expect(admin_ok == 100, f"admin /healthz answered 200 {admin_ok}/100 times")
    band = f"{lo}..{hi}" if rate not in (0.0, 1.0) else f"exactly {int(mean)}"
    return c, (f"rate {rate}: {k}/{n} injected 500 problem+json (accepted {band}); "
               f"http_requests_total 5xx {metric:.0f} (route label: {routes}); /openapi.json and "
               f"admin /healthz unaffected")


def delay_bound(bound_ms: int, n: int) -> tuple[Claim, str]:
    c = Claim()
    env = {"POEM_API_FAULT_DELAY": f"{bound_ms}ms", "POEM_API_ACCESS_LOG": "false",
           "POEM_API_LOG": "error"}
    with Server(env) as srv:
        res = hammer(srv.api_port, PATH, n, workers=20)
        lat = sorted(t * 1000 for s, _, t in res if s == 200)
        c.expect(len(lat) == n, f"{len(lat)}/{n} answered 200")
        mean = statistics.fmean(lat)
        # A uniform delay in 0..bound has mean bound/2 and sd bound/sqrt(12); the client adds a
        # little overhead on top. Upper limit: the bound plus a generous scheduling allowance.
        sd_mean = bound_ms / math.sqrt(12 * n)
        c.expect(mean >= bound_ms / 2 - SIGMAS * sd_mean,
                 f"mean latency {mean:.0f} ms: the delay is not being applied")
        c.expect(lat[-1] <= bound_ms + 1000, f"max latency {lat[-1]:.0f} ms > bound + 1 s")
        admin_ms = statistics.fmean(srv.admin("GET", "/healthz").elapsed * 1000 for _ in range(20))
        c.expect(admin_ms < bound_ms / 4,
                 f"admin /healthz took {admin_ms:.0f} ms on average: delayed too?")
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
    return c, (f"fault delay {bound_ms} ms: {n} requests, latency mean {mean:.0f} ms, p50 "
               f"{p50:.0f}, p99 {p99:.0f}, max {lat[-1]:.0f} ms (accepted: mean >= "
               f"{bound_ms / 2 - SIGMAS * sd_mean:.0f}, max <= {bound_ms + 1000}); admin /healthz mean {admin_ms:.1f} ms")


def check(n: int, command: str) -> list[Row]:
    rows = []
    for rate in (0.0, 0.2, 1.0):
        c, fig = error_rate(rate, n if rate == 0.2 else n // 4)
        rows.append(Row(f"fault-error-rate {rate}", "injected errors match the configured rate "
                        f"within {SIGMAS:.0f} sigma, on API routes only", c.ok, fig, command,
                        c.failures))
    c, fig = delay_bound(200, 400)
    rows.append(Row("fault-delay", "injected delay stays within its bound", c.ok, fig, command,
                    c.failures))
    return rows

