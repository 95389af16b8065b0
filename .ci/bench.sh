#!/usr/bin/env bash
# Smoke run of the benchmark harness (bench/run --smoke): every stack, about a second per
# workload, so the harness never rots. Asserts that it ran and wrote well-formed results with
# requests for every stack and workload; never asserts performance numbers.
# Installs what it needs, idempotently: wrk and nginx from apt when missing, the pinned Python
# packages into the repo's shared .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
if ((${#missing[@]})); then
  echo "bench.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
if ! .venv/bin/python - bench/requirements.txt <<'PY'
import importlib.metadata as m, sys
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, want = line.split("==")
        try:
            have = m.version(name)
        except m.PackageNotFoundError:
            sys.exit(1)
        if have != want:
            sys.exit(1)
PY
then
  echo "bench.sh: installing bench/requirements.txt into .venv (uWSGI compiles: about a minute)"
  .venv/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt
fi

out=$(mktemp -d /tmp/bench-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
# 32 connections on the delay endpoint keep the worker-based stacks' queues short (the full run
# uses 256); everything else as in the full run, for one second each.
timeout 600 bench/run --smoke --conns-delay 32 --out "$out"

python3 - "$out" <<'PY'
import json, os, sys
import xml.etree.ElementTree as ET
out = sys.argv[1]
passed, failures = 0, []

def check(ok, what):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(what)

with open(os.path.join(out, "results.json")) as f:
    r = json.load(f)
expected = ["gunicorn-sync", "gunicorn-gthread", "uwsgi-http", "nginx-uwsgi", "poem-api",
            "poem-api-log", "nginx-static"]
check([s["name"] for s in r["stacks"]] == expected, f"stacks {expected}")
check(r["machine"]["cores"] >= 1 and r["machine"]["cpu_model"], "machine recorded")
check(r["load_generator"]["tool"] == "wrk" and r["load_generator"]["version"], "wrk recorded")
for s in r["stacks"]:
    name, m = s["name"], s["median"]
    check(m is not None and not any("error" in x for x in s["rounds"]), f"{name} ran")
    if m is None:
        continue
    wls = ["get_root", "echo"] + ([] if name == "nginx-static" else ["delay"])
    for w in wls:
        got = m["workloads"].get(w) or {}
        check((got.get("requests") or 0) > 0 and (got.get("rps") or 0) > 0,
              f"{name} {w}: requests > 0")
        check(got.get("latency_p99_us") is not None, f"{name} {w}: latency recorded")
    check(m["start_ms"] and m["start_ms"] > 0, f"{name}: start time recorded")
    check(m["idle_memory"]["rss_kib"] > 0 and m["idle_memory"]["pss_kib"] > 0,
          f"{name}: idle memory recorded")
    check(m["peak_memory"]["rss_kib"] > 0, f"{name}: peak memory recorded")
    check(m["shutdown"]["exit_ms"] is not None and
          all(x["shutdown"]["exited"] for x in s["rounds"]), f"{name}: exited after SIGTERM")
    check(m["checks_ok"], f"{name}: answers the benchmarked requests correctly "
          + json.dumps({k: v for x in s["rounds"] for k, v in x["checks"].items()
                        if not v["ok"]}))
check(len(r["targets"]) == 9 and all(t["status"] in ("PASS", "MISS") for t in r["targets"]),
      "targets evaluated")
md = open(os.path.join(out, "results.md")).read()
check("| poem-api |" in md and ("PASS" in md or "MISS" in md), "markdown table written")
root = ET.parse(os.path.join(out, "chart.svg")).getroot()
check(root.tag.endswith("svg") and len(list(root.iter("{http://www.w3.org/2000/svg}rect"))) > 10,
      "chart.svg is a well-formed SVG with bars")
for f in failures:
    print(f"FAIL: {f}")
print(f"bench smoke: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY
