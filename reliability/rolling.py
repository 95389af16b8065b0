"""Rolling restart: two instances behind a readiness-aware proxy, each stopped and restarted in turn
under steady load, as a Deployment with maxUnavailable: 0 does it. Nothing may fail."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from harness import (HERE, HOST, Claim, Row, Server, Wrk, _die_with_parent, free_port,
                     repeat_runs)

DRAIN = 2.0
SHUTDOWN_TIMEOUT = 5.0
POLL = 0.1  # proxy readiness poll interval: far below the drain delay, as in a cluster


def instance(name: str, api_port: int | None = None, admin_port: int | None = None,
             drain: float = DRAIN) -> Server:
    return Server({
        "POEM_API_DRAIN_DELAY": f"{int(drain * 1000)}ms",
        "POEM_API_SHUTDOWN_TIMEOUT": f"{int(SHUTDOWN_TIMEOUT * 1000)}ms",
        "POEM_API_ACCESS_LOG": "false",
        "POEM_API_LOG": "warn",
    }, name=name, api_port=api_port, admin_port=admin_port)


def start_proxy(servers: list[Server]) -> tuple[subprocess.Popen, int]:
    args = [sys.executable, str(HERE / "proxy.py"), "--listen", f"{HOST}:{free_port()}",
            "--poll-interval", str(POLL)]
    for s in servers:
        args += ["--backend", f"{HOST}:{s.api_port}:{s.admin_port}"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=_die_with_parent)
    line = p.stdout.readline()
    if not line.startswith("listening "):
        p.kill()
        raise RuntimeError(f"proxy did not start: {line}{p.stdout.read()}")
    return p, int(line.split()[1])


def one_run(drain: float = DRAIN) -> tuple[Claim, dict]:
    c = Claim()
    servers = [instance("a", drain=drain).start(), instance("b", drain=drain).start()]
    proxy, port = start_proxy(servers)
    fig = {"restarts": 0, "exit_codes": []}
    wrk = None
    try:
        time.sleep(5 * POLL)  # the proxy has seen both ready
        wrk = Wrk(f"http://{HOST}:{port}/", connections=16, threads=1)
        time.sleep(1.0)
        for i, old in enumerate(servers):
            t = time.monotonic()
            old.signal(signal.SIGTERM)
            code = old.wait(drain + SHUTDOWN_TIMEOUT + 5)
            fig["exit_codes"].append(code)
            c.expect(code == 0, f"{old.name} exited with {code}")
            c.expect(time.monotonic() - t <= drain + SHUTDOWN_TIMEOUT,
                     f"{old.name} took {time.monotonic() - t:.1f} s to exit")
            if old.alive():
                old.kill()
            # Same ports, as a replacement pod behind the same Service would be reached.
            servers[i] = instance(old.name, old.api_port, old.admin_port, drain).start()
            fig["restarts"] += 1
            time.sleep(5 * POLL + 0.5)  # back in rotation, and serving for a moment
        time.sleep(1.0)
        res = wrk.stop()
        wrk = None
        fig.update(requests=res["requests"], failed=res["failed"], non2xx=res["non2xx"],
                   socket_errors=res["socket_errors"])
        c.expect(res["requests"] > 0, "no request was sent")
        c.expect(res["failed"] == 0, f"wrk saw failures: {res}")
    finally:
        if wrk is not None:
            wrk.stop()
        proxy.send_signal(signal.SIGTERM)
        try:
            out, _ = proxy.communicate(timeout=10)
            stats = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
        except Exception as e:  # noqa: BLE001 - reported as a failure below
            proxy.kill()
            stats = {"error": repr(e)}
        fig["proxy"] = stats
        for s in servers:
            code = s.stop(drain + SHUTDOWN_TIMEOUT + 5)
            c.expect(code == 0, f"{s.name} (final stop) exited with {code}")
    backends = stats.get("backends", {})
    c.expect(stats.get("no_backend", 1) == 0, f"proxy had no ready backend for a connection: {stats}")
    c.expect(all(b["connect_failures"] == 0 for b in backends.values()),
             f"proxy could not connect to a backend it believed ready: {stats}")
    c.expect(len(backends) == 2 and all(b["connections"] > 0 for b in backends.values()),
             f"load did not reach both instances: {stats}")
    return c, fig


def check(repeat: int, command: str) -> list[Row]:
    runs, failures = repeat_runs(one_run, repeat)
    total = sum(r.get("requests", 0) for r in runs)
    worst = max((r.get("failed", 0) for r in runs), default=0)
    restarts = sum(r["restarts"] for r in runs)
    conns = sum(sum(b["connections"] for b in r.get("proxy", {}).get("backends", {}).values())
                for r in runs)
    figures = (f"{repeat} run(s), {restarts} instance restarts (drain {DRAIN:.0f} s), "
               f"{total} requests over {conns} proxied connections, worst run {worst} failed; "
               f"proxy never lacked a ready backend, 0 connect failures; every exit code 0")
    rows = [Row("rolling-restart", "two instances restarted in turn behind a /readyz-aware "
                "proxy: no request fails", not failures, figures, command, failures)]

    # Control: the same run without a drain delay must lose requests, or this check could not
    # tell a good server from a bad one. Each stop closes the listener while the proxy still
    # routes there (up to one poll interval) and ~16 keep-alive clients reconnect at that moment.
    c, fig = one_run(drain=0.0)
    lost = fig.get("failed", 0)
    failed_connects = sum(b["connect_failures"]
                          for b in fig.get("proxy", {}).get("backends", {}).values())
    rows.append(Row("rolling-restart-control", "control: the same with drain delay 0 loses "
                    "requests (the check can fail)", lost > 0,
                    f"{fig.get('requests', 0)} requests, {lost} failed, {failed_connects} proxy "
                    f"connections refused by a stopped instance", command,
                    [] if lost > 0 else [f"no loss without a drain delay: {fig}"]))
    return rows
