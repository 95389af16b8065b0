#!/usr/bin/env bash
# Smoke run of the benchmark harness (bench/run --smoke): every stack, about a second per
# workload (poem-api also over HTTP/2 with h2load), then bench/instructions --smoke (a few
# hundred requests per workload under callgrind, ~30 s), so the harness never rots. Asserts that it ran and wrote well-formed results
# with requests for every stack and workload; never asserts performance numbers.
# Installs what it needs, idempotently: wrk, nginx, valgrind and h2load (nghttp2-client) from apt
# when missing, the pinned Python packages into the repo's shared .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
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
for s in r["stacks"]:
    if s["name"] not in ("poem-api", "poem-api-log") or s["median"] is None:
        continue
    h2 = s["median"].get("h2") or {}
    for w in ("get_root_h2", "echo_h2", "get_root_h1_h2load"):
        got = h2.get(w) or {}
        check((got.get("requests") or 0) > 0 and got.get("non2xx") == 0
              and got.get("failed") == 0, f"{s['name']} {w} (h2load): answered, all 2xx")
ins = r.get("instructions") or {}
check(not ins.get("error") and not ins.get("skipped"), "bench/instructions ran: "
      + str(ins.get("error") or ins.get("skipped")))
by_name = {s["name"]: s for s in ins.get("servers", [])}
for name in ("poem-api", "poem-api-log", "nginx-static"):
    s = by_name.get(name) or {}
    check("error" not in s and s.get("workloads"), f"instructions {name} ran: {s.get('error')}")
    # CI's binary is the static release build: its allocator has no symbols to count calls to
    static = s.get("linkage") == "static"
    for w in ("get_root", "echo"):
        got = (s.get("workloads") or {}).get(w) or {}
        # the smallest real figure is nginx's, ~9,000; a broken count gives 0 or nonsense
        check(1000 < (got.get("ir") or 0) < 10_000_000, f"instructions {name} {w}: counted")
        if static:
            check(got.get("allocs") is None and "static" in got.get("allocs_note", ""),
                  f"instructions {name} {w}: allocations n/a for a static binary, and said so")
        else:
            check((got.get("allocs") or 0) > 0, f"instructions {name} {w}: allocations counted")
check(by_name.get("poem-api-log", {}).get("stdout_lines", 0) > 0, "access log lines counted")
static_poem = by_name.get("poem-api", {}).get("linkage") == "static"
check(len(r["targets"]) == 14 and all(
    t["status"] in ("PASS", "MISS") or (static_poem and t["unit"] == "allocations")
    for t in r["targets"]), "targets evaluated")
md = open(os.path.join(out, "results.md")).read()
check("| poem-api |" in md and ("PASS" in md or "MISS" in md), "markdown table written")
check("## Instructions per request (callgrind)" in md, "instructions table written")
check("## HTTP/2 (h2load)" in md, "HTTP/2 table written")
root = ET.parse(os.path.join(out, "chart.svg")).getroot()
check(root.tag.endswith("svg") and len(list(root.iter("{http://www.w3.org/2000/svg}rect"))) > 10,
      "chart.svg is a well-formed SVG with bars")
for f in failures:
    print(f"FAIL: {f}")
print(f"bench smoke: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY

# The traces-on server of bench/instructions (spans exported to the tool's own OTLP sink): a
# few hundred requests, so the harness's sink and its check stay working.
timeout 300 bench/instructions --smoke --servers poem-api-traces --workloads get_root \
  --json "$out/traces.json" >/dev/null
python3 - "$out/traces.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["servers"][0]
ok = "error" not in s and s.get("otlp_exports", 0) > 0 and s["workloads"]["get_root"]["ir"] > 1000
print(f"bench smoke, traces on: {'1 passed, 0' if ok else '0 passed, 1'} failed "
      f"({s.get('otlp_exports')} exports, {s.get('error', 'no error')})")
sys.exit(0 if ok else 1)
PY
