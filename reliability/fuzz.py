"""Fuzzing the API contract: schemathesis generates valid and invalid requests from /openapi.json
and checks that no response is a 5xx and every response matches the documented status codes,
content types, headers and schemas.

Findings already reported (each with its reason) are listed in schemathesis-baseline.json: the run
fails on anything new, and the table states how many known findings are still seen. After a fix,
`reliability/run --only fuzz --prune-baseline` drops entries that no longer reproduce.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from harness import HERE, Claim, Row, Server, scratch

SEED = 20240601  # fixed: the same inputs every run, so a failure reproduces
CONFIG = HERE / "schemathesis.toml"
BASELINE = HERE / "schemathesis-baseline.json"


def schemathesis() -> str:
    exe = Path(sys.executable).parent / "schemathesis"
    if not exe.exists():
        raise RuntimeError(f"{exe} missing: pip install -r reliability/requirements.txt")
    return str(exe)


def check(examples: int, time_limit: int, command: str, prune: bool = False) -> list[Row]:
    c = Claim()
    out = scratch("schemathesis")
    env = {
        # A short bound for /api/v1/delay keeps generated delays cheap.
        "POEM_API_MAX_DELAY": "50ms",
        "POEM_API_ACCESS_LOG": "false",
        "POEM_API_LOG": "warn",
    }
    with Server(env) as srv:
        # Every check is on by default; schemathesis.toml only narrows them per operation, with
        # reasons (naming checks on the command line would override those exceptions).
        args = [schemathesis(), "--config-file", str(CONFIG), "run", srv.url("/openapi.json"),
                "--phases", "examples,coverage,fuzzing",
                "--max-examples", str(examples),
                "--seed", str(SEED),
                "--generation-database", "none",
                "--continue-on-failure",
                "--request-timeout", "10",
                "--workers", "2",
                "--baseline", str(BASELINE),
                "--no-color"]
        if prune:
            args.append("--baseline-prune")
        try:
            # In a scratch directory: schemathesis and hypothesis leave caches in the cwd.
            p = subprocess.run(args, capture_output=True, text=True, timeout=time_limit, cwd=out)
            log, code = p.stdout + p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            log, code = str(e.stdout or ""), "timeout"
        (out / "schemathesis.log").write_text(" ".join(args) + "\n" + log)
        healthy = srv.healthy()

    def count(pattern: str) -> int:
        m = re.search(pattern, log)
        return int(m.group(1)) if m else 0

    generated = count(r"(\d+) generated")
    tested = count(r"Tested: (\d+)")
    known = count(r"Known failures: (\d+)")
    entries = json.loads(BASELINE.read_text())["entries"] if BASELINE.exists() else []
    baseline_size = len(entries)
    # "No 5xx" is the one claim a baseline must never excuse.
    c.expect(not any(e["check"] == "not_a_server_error" for e in entries),
             "the baseline excuses a server error")
    c.expect(code == 0, f"schemathesis exit {code} (new findings?); log {out / 'schemathesis.log'}")
    c.expect(tested > 0 and generated > 0, "schemathesis tested nothing")
    c.expect(healthy, "server not healthy after fuzzing")
    if code != 0:
        c.failures.append("\n".join(log.splitlines()[-100:]))
    figures = (f"{tested} operations, {generated} generated requests (up to {examples} per "
               f"operation and phase, seed {SEED}), all checks: 0 new findings; {known} of "
               f"{baseline_size} known findings seen again (reliability/schemathesis-baseline.json, "
               f"reported to the server's owners)")
    return [Row("schemathesis", "generated requests to every operation: no 5xx, responses "
                "conform to the OpenAPI document", c.ok, figures, command, c.failures)]
