"""Runs the reliability checks and prints a markdown table of claims, results and figures.

Profiles: `ci` is the fast set run on every submission; `long` repeats and enlarges everything.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import abuse
import faults
import fuzz
import http2
import rolling
import serving
import zero_loss
from harness import RUN_DIR, Row, binary

PROFILES = {
    #        zero-loss runs, rolling runs, fuzz examples/op, fuzz time limit s, fault requests
    "ci":   dict(repeat=1, rolling=1, examples=300, fuzz_time=300, fault_n=2000),
    "long": dict(repeat=10, rolling=3, examples=1000, fuzz_time=1800, fault_n=10000),
}
CHECKS = ["zero-loss", "rolling", "abuse", "fuzz", "faults", "serving", "http2"]


def run_check(name: str, p: dict, profile: str, prune: bool = False) -> list[Row]:
    cmd = f"reliability/run --profile {profile} --only {name}"
    if name == "zero-loss":
        return zero_loss.check(p["repeat"], cmd)
    if name == "rolling":
        return rolling.check(p["rolling"], cmd)
    if name == "abuse":
        return abuse.check(cmd)
    if name == "fuzz":
        return fuzz.check(p["examples"], p["fuzz_time"], cmd, prune)
    if name == "faults":
        return faults.check(p["fault_n"], cmd)
    if name == "serving":
        return serving.check(cmd)
    if name == "http2":
        return http2.check(cmd)
    raise ValueError(name)


def table(rows: list[Row]) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| Check | Claim | Result | Figures (this run) | Reproduce |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {cell(r.check)} | {cell(r.claim)} | {r.result} | {cell(r.figures)} | "
                     f"`{r.command}` |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=PROFILES, default="long")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(CHECKS)}")
    ap.add_argument("--repeat", type=int, help="zero-loss stop runs (profile default otherwise)")
    ap.add_argument("--out", type=Path, help="also write the table (and failures) to this file")
    ap.add_argument("--prune-baseline", action="store_true",
                    help="drop schemathesis baseline entries that no longer reproduce (after fixes)")
    args = ap.parse_args()

    p = dict(PROFILES[args.profile])
    if args.repeat:
        p["repeat"] = args.repeat
    names = args.only.split(",") if args.only else CHECKS
    unknown = set(names) - set(CHECKS)
    if unknown:
        ap.error(f"unknown checks: {', '.join(sorted(unknown))}")

    print(f"binary: {binary()}; profile {args.profile}: {p}; logs: {RUN_DIR}", flush=True)
    rows: list[Row] = []
    for name in names:
        t = time.monotonic()
        try:
            new = run_check(name, p, args.profile, args.prune_baseline)
        except Exception:  # noqa: BLE001 - a crashed check is a failed claim, not a crashed run
            new = [Row(name, "(the check itself)", False, "crashed", f"reliability/run --only {name}",
                       [traceback.format_exc()])]
        rows += new
        for r in new:
            print(f"{r.result:4}  {r.check}: {r.figures}", flush=True)
        print(f"      ({name}: {time.monotonic() - t:.0f} s)", flush=True)

    report = table(rows)
    details = []
    for r in rows:
        if not r.ok:
            details.append(f"### {r.check}: FAIL\n\n" + "\n".join(f"- {n}" for n in r.notes))
    text = report + ("\n\n" + "\n\n".join(details) if details else "") + "\n"
    print()
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    passed = sum(r.ok for r in rows)
    print(f"{passed} passed, {len(rows) - passed} failed")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
