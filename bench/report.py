#!/usr/bin/env python3
"""Render bench/run's results.json as markdown tables, a target check and an SVG chart.

bench/run calls this itself; run it by hand to re-render committed results:

  bench/report.py bench/results/<date>/results.json   # rewrites results.md and chart.svg
  bench/report.py <dir>/instructions.json             # bench/instructions --json: writes .md
"""

import json
import os
import re
import statistics
import sys
from html import escape

LABELS = {
    "gunicorn-sync": "gunicorn (sync)",
    "gunicorn-gthread": "gunicorn (gthread)",
    "uwsgi-http": "uWSGI (http)",
    "nginx-uwsgi": "nginx + uWSGI",
    "poem-api": "poem-api",
    "poem-api-log": "poem-api + access log",
    "nginx-static": "nginx fixed response (ceiling)",
}
COLORS = {
    "gunicorn-sync": "#4c78a8",
    "gunicorn-gthread": "#72b7b2",
    "uwsgi-http": "#54a24b",
    "nginx-uwsgi": "#b279a2",
    "poem-api": "#e45756",
    "poem-api-log": "#ff9d98",
    "nginx-static": "#9d9d9d",
}
PYTHON_STACKS = ["gunicorn-sync", "gunicorn-gthread", "uwsgi-http", "nginx-uwsgi"]
WORKLOADS = [("get_root", "GET /"), ("echo", "POST /api/v1/echo"), ("delay", "GET /api/v1/delay")]


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def censor(w, timeout_s):
    """wrk's percentiles cover completed requests only. When requests timed out, the true
    percentile is at least the timeout wherever the timed-out share reaches past it: report the
    timeout as a lower bound there, flagged *_censored, instead of a flattering number."""
    w = dict(w)
    done = w.get("requests") or 0
    if w.get("latency_samples") is not None:
        # exact: completed responses slower than the timeout carry no latency sample
        lost = max(0, done - w["latency_samples"])
        share = lost / done if done else 0.0
    else:  # older results: estimate from wrk's timeout counter
        lost = w.get("errors_timeout") or 0
        share = lost / (done + lost) if done + lost else 0.0
    w["late_responses"] = lost
    floor = timeout_s * 1e6
    for key, q in (("latency_p50_us", 0.50), ("latency_p90_us", 0.10),
                   ("latency_p99_us", 0.01), ("latency_p999_us", 0.001)):
        w[key + "_censored"] = share > q
        if share > q:
            w[key] = max(w.get(key) or 0, floor)
    w["latency_max_us_censored"] = lost > 0
    if lost:
        w["latency_max_us"] = max(w.get("latency_max_us") or 0, floor)
    if done == 0:
        w["latency_min_us"] = None
    return w


def aggregate(rounds, timeout_s=2):
    """Median of every numeric metric over the rounds that did not fail."""
    good = [r for r in rounds if "error" not in r]
    if not good:
        return None
    agg = {"rounds_ok": len(good), "start_ms": median_or_none(
        [x for r in good for x in r["start_ms_samples"]])}
    for key in ("idle_memory", "peak_memory"):
        agg[key] = {k: median_or_none([r[key][k] for r in good])
                    for k in ("rss_kib", "pss_kib", "processes")}
    agg["workloads"] = {}
    for w in good[0]["workloads"]:
        rs = [censor(r["workloads"][w], timeout_s) for r in good if w in r["workloads"]]
        agg["workloads"][w] = {
            k: median_or_none([x.get(k) for x in rs])
            for k in ("rps", "requests", "latency_p50_us", "latency_p90_us", "latency_p99_us",
                      "latency_p999_us", "latency_max_us", "errors", "errors_timeout",
                      "late_responses",
                      "errors_connect", "non2xx", "server_cpu_pct", "loadgen_cpu_pct",
                      "other_cpu_pct", "connections")}
        for k in ("latency_p50_us", "latency_p90_us", "latency_p99_us", "latency_p999_us",
                  "latency_max_us"):
            agg["workloads"][w][k + "_censored"] = any(x[k + "_censored"] for x in rs)
        # server CPU time per request: less sensitive to a shared machine than requests/s
        agg["workloads"][w]["server_cpu_us_per_request"] = median_or_none(
            [x["server_cpu_pct"] / 100 * 1e6 / x["rps"] for x in rs
             if x.get("server_cpu_pct") is not None and x.get("rps")])
        agg["workloads"][w]["peak_rss_kib"] = median_or_none(
            [x["peak_memory"]["rss_kib"] for x in rs if x.get("peak_memory")])
        agg["workloads"][w]["peak_pss_kib"] = median_or_none(
            [x["peak_memory"]["pss_kib"] for x in rs if x.get("peak_memory")])
    agg["shutdown"] = {
        k: median_or_none([r["shutdown"].get(k) for r in good])
        for k in ("exit_ms", "failed", "failed_retry_safe", "requests_ok", "refused_after_stop")}
    agg["shutdown"]["failed_max"] = max(r["shutdown"]["failed"] for r in good)
    agg["shutdown"]["path"] = good[0]["shutdown"]["path"]
    agg["shutdown"]["exit_codes"] = good[-1]["shutdown"]["exit_codes"]
    agg["checks_ok"] = all(v["ok"] for r in good for v in r["checks"].values())
    h2 = [r["h2"] for r in good if r.get("h2")]
    if h2:
        agg["h2"] = {}
        for w in h2[0]:
            rs = [x[w] for x in h2 if w in x]
            agg["h2"][w] = {k: median_or_none([x.get(k) for x in rs])
                            for k in ("rps", "requests", "failed", "errored", "timeout",
                                      "non2xx", "latency_mean_us", "latency_max_us",
                                      "server_cpu_pct", "loadgen_cpu_pct",
                                      "server_cpu_us_per_request", "connections",
                                      "streams_per_connection")}
            agg["h2"][w].update({k: rs[0][k] for k in ("label", "protocol", "h2load_argv")})
    return agg



def _stack(result, name):
    for s in result["stacks"]:
        if s["name"] == name:
            return s["median"]
    return None


def _wl(result, name, workload):
    m = _stack(result, name)
    return (m or {}).get("workloads", {}).get(workload)


def _delay_settings(result):
    for w in result["settings"]["workloads"]:
        if w["name"] == "delay":
            return w["connections"], int(w["path"].rsplit("/", 1)[1])
    return 256, 100


def mb(kib):
    """Decimal megabytes (10^6 bytes), the unit of the targets, from /proc's KiB."""
    return None if kib is None else kib * 1024 / 1e6


def _best_python(result, workload):
    best = None
    for name in PYTHON_STACKS:
        w = _wl(result, name, workload)
        if w and w["rps"] is not None and (best is None or w["rps"] > best[1]):
            best = (name, w["rps"])
    return best


def _target(name, value, threshold, op, unit, evidence):
    if value is None:
        return {"target": name, "value": None, "threshold": threshold, "op": op,
                "unit": unit, "status": "N/A", "evidence": evidence}
    ok = value >= threshold if op == ">=" else value <= threshold
    return {"target": name, "value": round(value, 3), "threshold": threshold, "op": op,
            "unit": unit, "status": "PASS" if ok else "MISS", "evidence": evidence}


def evaluate_targets(result):
    """poem-api's targets from the issue, computed from this run's medians."""
    targets = []
    poem = _stack(result, "poem-api")

    def add(*a):
        targets.append(_target(*a))

    for wl, label in WORKLOADS[:2]:
        p = _wl(result, "poem-api", wl)
        best = _best_python(result, wl)
        ceil = _wl(result, "nginx-static", wl)
        if p and best:
            add(f"{label} throughput vs best Python stack", p["rps"] / best[1], 5.0, ">=", "x",
                f"poem-api {p['rps']:.0f} req/s vs {LABELS[best[0]]} {best[1]:.0f} req/s")
        else:
            add(f"{label} throughput vs best Python stack", None, 5.0, ">=", "x", "not measured")
        if p and ceil:
            add(f"{label} throughput vs nginx ceiling", p["rps"] / ceil["rps"], 0.6, ">=", "x",
                f"poem-api {p['rps']:.0f} req/s vs nginx fixed response {ceil['rps']:.0f} req/s")
        else:
            add(f"{label} throughput vs nginx ceiling", None, 0.6, ">=", "x", "not measured")
    conns, ms = _delay_settings(result)
    theory = conns * 1000.0 / ms
    d = _wl(result, "poem-api", "delay")
    add(f"delay/{ms} at {conns} connections: req/s vs 0.95 x {theory:.0f}",
        d["rps"] / theory if d else None, 0.95, ">=", "x of theory",
        f"{d['rps']:.0f} req/s of {theory:.0f} theoretical" if d else "not measured")
    add(f"delay/{ms} at {conns} connections: p99", d["latency_p99_us"] / 1000 if d else None,
        round(ms * 1.2, 1), "<=", "ms",
        f"p99 {d['latency_p99_us'] / 1000:.1f} ms (p50 {d['latency_p50_us'] / 1000:.1f} ms)"
        if d else "not measured")
    add("idle RSS (whole process tree)", mb(poem["idle_memory"]["rss_kib"]) if poem else None,
        10.0, "<=", "MB", f"PSS {mb(poem['idle_memory']['pss_kib']):.2f} MB" if poem else "")
    add("start to ready (median)", poem["start_ms"] if poem else None, 20.0, "<=", "ms",
        "exec to first 200 from /readyz" if poem else "")
    if poem:
        sd = poem["shutdown"]
        add("failed requests when stopped under load (worst round)", sd["failed_max"], 0, "<=",
            "requests", f"exit {sd['exit_ms']:.0f} ms after SIGTERM, {sd['requests_ok']:.0f} "
            f"ok, {sd['refused_after_stop']:.0f} refused after the port closed, exit codes "
            f"{sd['exit_codes']}")
    else:
        add("failed requests when stopped under load (worst round)", None, 0, "<=", "", "")
    log_on, ceil = _wl(result, "poem-api-log", "get_root"), _wl(result, "nginx-static", "get_root")
    a = (log_on or {}).get("server_cpu_us_per_request")
    b = (ceil or {}).get("server_cpu_us_per_request")
    add("GET / server CPU per request, access log on, vs nginx fixed response",
        a / b if a and b else None, 1.5, "<=", "x",
        f"{a:.1f} vs {b:.1f} µs" if a and b else "not measured")
    targets += instruction_targets(result.get("instructions"))
    return targets


# ---------------------------------------------------------------- instructions (callgrind)

INSTRUCTION_LABELS = {
    "poem-api-log": "poem-api, default config (access log on)",
    "poem-api": "poem-api, `POEM_API_ACCESS_LOG=false`",
    "nginx-static": "nginx fixed response",
    "bare-poem": "bare poem (same framework, no layers; `bench/bare-poem`)",
    "poem-api-traces": "poem-api, traces exported (`POEM_API_OTLP_ENDPOINT`, access log off)",
}
INSTRUCTION_WORKLOADS = {"get_root": "GET /", "echo": "POST /api/v1/echo"}
# The targets for a release build, counted by bench/instructions:
# (server, workload, measure, at most, unit).
INSTRUCTION_TARGETS = [
    ("poem-api-log", "get_root", "ir", 30000, "instructions"),
    ("poem-api", "get_root", "ir", 25000, "instructions"),
    ("poem-api-log", "echo", "ir", 40000, "instructions"),
    ("poem-api-log", "get_root", "allocs", 20, "allocations"),
]


def _instr_entry(ins, name, workload, key="servers"):
    s = next((s for s in (ins or {}).get(key, []) if s["name"] == name), None)
    if s is None or "error" in s:
        return None
    return s["workloads"].get(workload)


def instruction_targets(ins):
    """The instruction and allocation targets, from bench/instructions' results (N/A when that
    measurement did not run)."""
    out = []
    for name, wl, key, limit, unit in INSTRUCTION_TARGETS:
        e = _instr_entry(ins, name, wl)
        v = e.get(key) if e else None
        log = "on" if name == "poem-api-log" else "off"
        what = "instructions" if key == "ir" else "heap allocations"
        if e and v is None:
            evidence = e.get("allocs_note", "not counted")
        elif e:
            evidence = f"callgrind, (I(2N) − I(N) − idle) / N, median of {ins['settings']['repeat']}"
        else:
            evidence = (ins or {}).get("skipped") or "not measured"
        out.append(_target(f"{INSTRUCTION_WORKLOADS[wl]} {what} per request, access log {log}",
                           v, limit, "<=", unit, evidence))
    return out


def _k(v):
    return "–" if v is None else f"{v / 1000:.1f}k"


def _a(v):
    return "n/a" if v is None else f"{v:.1f}"


def _before_after(after, before, key, fmt):
    if after is None:
        return "failed"
    text = fmt(after.get(key))
    if before is not None and before.get(key) is not None and after.get(key) is not None:
        old = before[key]
        pct = round((after[key] - old) / old * 100) if old else None
        change = "" if pct is None else \
            f" ({'±0' if pct == 0 else f'{pct:+d}'.replace('-', '−')}%)"
        text = f"{fmt(old)} → {text}{change}"
    return text


def instructions_markdown(ins):
    """bench/instructions' table: instructions and allocations per request, before → after
    when a baseline binary was measured too."""
    if not ins or ins.get("skipped"):
        return f"Not measured: {(ins or {}).get('skipped', 'bench/instructions did not run')}.\n"
    wls = ins["settings"]["workloads"]
    lines = ["| server | " + " | ".join(f"{INSTRUCTION_WORKLOADS[w]} instructions | "
                                         f"{INSTRUCTION_WORKLOADS[w]} allocations"
                                         for w in wls) + " |",
             "|---|" + "---:|---:|" * len(wls)]
    for s in ins["servers"]:
        row = [INSTRUCTION_LABELS.get(s["name"], s["name"])]
        for w in wls:
            after = _instr_entry(ins, s["name"], w)
            before = _instr_entry(ins, s["name"], w, "baseline")
            row += [_before_after(after, before, "ir", _k),
                    _before_after(after, before, "allocs", _a)]
        lines.append("| " + " | ".join(row) + " |")
    st = ins["settings"]
    lines += ["", f"User-space instructions and heap allocations per request under callgrind: "
              f"(I(2N) − I(N) − idle) / N, N = {st['requests']:,}, `h2load --h1` over "
              f"{st['connections']} keep-alive connections, median of {st['repeat']}; one tokio "
              f"worker; `{ins['command']}`."]
    bins = {}
    for key, role in (("baseline", "before"), ("servers", "measured")):
        for s in ins.get(key, []):
            if s.get("binary"):
                bins.setdefault((s["binary"], s.get("sha256")), (role, s["name"]))
    for (path, sha), (role, name) in bins.items():
        lines.append(f"{'Before: ' if role == 'before' else ''}{name.split('-log')[0]} binary "
                     f"`{path}` (sha256 {str(sha)[:16]}…).")
    calls = []
    for s in ins["servers"]:
        for w in wls:
            e = _instr_entry(ins, s["name"], w)
            got = {k: v for k, v in ((e or {}).get("libc_calls") or {}).items() if v >= 0.005}
            if got:
                calls.append(f"| {INSTRUCTION_LABELS.get(s['name'], s['name'])} | "
                             f"{INSTRUCTION_WORKLOADS[w]} | " + ", ".join(
                                 f"{k} {v:.2f}" for k, v in sorted(got.items())) + " |")
    if calls:
        lines += ["", "Calls into libc per request, from the same dumps. Each is a system call, "
                  "except `clock_gettime` (vDSO); `syscall` is the generic wrapper, which Rust's std "
                  "uses for futex (thread wake-ups):",
                  "", "| server | workload | calls per request |", "|---|---|---|"] + calls
    errors = [f"- {s['name']}: {s['error']}" for s in ins["servers"] + ins.get("baseline", [])
              if "error" in s]
    return "\n".join(lines + ([""] + errors if errors else [])) + "\n"


# ---------------------------------------------------------------- markdown

def _f(v, digits=0, unit=""):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def _ms(us, digits=1, censored=False):
    if us is None:
        return "–"
    return ("≥ " if censored else "") + _f(us / 1000, digits)


def _lat(w, key, digits=1):
    return _ms(w.get(key), digits, w.get(key + "_censored", False))


def header(result):
    m = result["machine"]
    lg = result["load_generator"]
    s = result["settings"]
    la0, la1 = m["loadavg_at_start"], m.get("loadavg_at_end")
    lines = [
        f"- Date: {result['date']}; machine: {m['cpu_model']}, {m['cores']} cores, "
        f"Linux {m['kernel']}; load average at start {la0[0]:.2f} / {la0[1]:.2f} / {la0[2]:.2f}"
        + (f", at end {la1[0]:.2f} / {la1[1]:.2f} / {la1[2]:.2f}" if la1 else "")
        + " (1 / 5 / 15 min; the machine is shared).",
        f"- Command: `{result['command']}`"
        + (" (smoke run: numbers not meaningful)" if result.get("smoke") else ""),
        f"- Load generator: {lg['version']}, {lg['threads']} thread(s), Lua script "
        f"`{lg['script']}`, timeout {lg['timeout_s']} s, pinned to CPU(s) {lg['pinned_to_cpus']};"
        f" servers pinned to CPU(s) {s['server_cpus']}. {s['duration_s']:g} s per workload after "
        f"{s['warmup_s']:g} s warm-up; {s['repeat']} round(s), medians shown. Non-2xx: "
        f"{lg['non2xx']}.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v),
    ]
    other = sorted(w["other_cpu_pct"] for st in result["stacks"] for r in st["rounds"]
                   for w in r.get("workloads", {}).values() if w.get("other_cpu_pct") is not None)
    if other:
        lines.append(
            f"- Noise: the rest of the machine used {other[len(other) // 2]:.0f}% of one CPU "
            f"(median over all measurements; min {other[0]:.0f}%, max {other[-1]:.0f}%) while "
            "the measurements ran. Each stack started only after the machine had been below "
            f"{s.get('quiet_below_pct', 0):g}% for 2 s, or after waiting "
            f"{s.get('quiet_wait_s', 0):g} s; a measurement during which they used more than "
            f"{s.get('max_other_cpu_pct', 100):g}% was repeated up to {s.get('retries', 0)} "
            "times and the least disturbed attempt kept." if s.get("quiet_below_pct") else
            f"- Noise: the rest of the machine used {other[len(other) // 2]:.0f}% of one CPU "
            f"(median over all measurements; min {other[0]:.0f}%, max {other[-1]:.0f}%).")
    if result.get("poem_api_binary"):
        b = result["poem_api_binary"]
        lines.append(f"- poem-api binary: `{b['path']}` (sha256 {str(b['sha256'])[:16]}…), "
                     f"repository at {result.get('repo_revision')}.")
    return "\n".join(lines)


def markdown_tables(result):
    """The compact results table and the target check (also printed by bench/run)."""
    conns, ms = _delay_settings(result)
    wl_conns = {w["name"]: w["connections"] for w in result["settings"]["workloads"]}
    out = [
        "| Stack | GET / req/s (p99 ms) | POST echo req/s (p99 ms) | "
        f"delay/{ms} req/s (p99 ms) | start ms | idle RSS / PSS MB | peak RSS / PSS MB | "
        "SIGTERM under load: exit ms, failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result["stacks"]:
        m = s["median"]
        if m is None:
            err = next((r.get("error") for r in s["rounds"] if r.get("error")), "failed")
            err = err.splitlines()[0][:120].replace("|", "/")
            out.append(f"| {s['label']} | failed: {err} | | | | | | |")
            continue
        cells = []
        for wl, _ in WORKLOADS:
            w = m["workloads"].get(wl)
            if not w:
                cells.append("n/a")
                continue
            bad = ((w["errors"] or 0) - (w["errors_timeout"] or 0) + (w["non2xx"] or 0)
                   + (w.get("late_responses") or 0))
            cells.append(f"{_f(w['rps'])} ({_lat(w, 'latency_p99_us')})"
                         + (f" ⚠ {bad:,.0f} err" if bad else ""))
        sd = m["shutdown"]
        out.append(
            f"| {s['label']} | " + " | ".join(cells) + f" | {_f(m['start_ms'], 1)} | "
            f"{_f(mb(m['idle_memory']['rss_kib']), 1)} / {_f(mb(m['idle_memory']['pss_kib']), 1)}"
            f" | {_f(mb(m['peak_memory']['rss_kib']), 1)} / "
            f"{_f(mb(m['peak_memory']['pss_kib']), 1)} | {_f(sd['exit_ms'])}, "
            f"{_f(sd['failed_max'])} |")
    out.append("")
    out.append(f"Connections: GET / {wl_conns.get('get_root')}, echo {wl_conns.get('echo')}, "
               f"delay {wl_conns.get('delay')}. \"err\" = socket errors + non-2xx + responses slower "
               "than wrk's timeout, during the measured window; \"≥\" marks a latency that is "
               "a lower bound (see below).")
    return "\n".join(out) + "\n"


def targets_text(result):
    out = ["| poem-api target | value | target | result | evidence |",
           "|---|---:|---:|---|---|"]
    for t in result["targets"]:
        v = "–" if t["value"] is None else f"{t['value']:g} {t['unit']}"
        out.append(f"| {t['target']} | {v} | {t['op']} {t['threshold']:g} {t['unit']} | "
                   f"**{t['status']}** | {t['evidence']} |")
    return "\n".join(out) + "\n"


def workload_table(result, wl, label):
    best = _best_python(result, wl)
    rows = [f"#### {label}", "",
            "| Stack | conns | req/s | × best Python | p50 ms | p90 ms | p99 ms | max ms | "
            "socket errors | answered after the timeout | non-2xx | server CPU % | "
            "server CPU µs / request | "
            "wrk CPU % | other CPU % | peak RSS / PSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in result["stacks"]:
        w = (s["median"] or {}).get("workloads", {}).get(wl)
        if not w:
            continue
        ratio = f"{w['rps'] / best[1]:.2f}" if best and best[1] else "–"
        wrk_bound = (w.get("loadgen_cpu_pct") or 0) >= 90
        rows.append(
            f"| {s['label']} | {_f(w['connections'])} | {_f(w['rps'])} | {ratio} | "
            f"{_lat(w, 'latency_p50_us', 2)} | {_lat(w, 'latency_p90_us', 2)} | "
            f"{_lat(w, 'latency_p99_us', 2)} | {_lat(w, 'latency_max_us', 1)} | "
            f"{_f((w['errors'] or 0) - (w['errors_timeout'] or 0))} | "
            f"{_f(w.get('late_responses'))} | {_f(w['non2xx'])} | {_f(w['server_cpu_pct'])} | "
            f"{_f(w.get('server_cpu_us_per_request'), 1)} | "
            f"{_f(w['loadgen_cpu_pct'])}{' (wrk-bound)' if wrk_bound else ''} | "
            f"{_f(w.get('other_cpu_pct'))} | "
            f"{_f(mb(w['peak_rss_kib']), 1)} / "
            f"{_f(mb(w['peak_pss_kib']), 1)} |")
    return "\n".join(rows) + "\n"


def lifecycle_table(result):
    rows = ["| Stack | processes | start ms (median) | idle RSS MB | idle PSS MB | "
            "peak RSS MB | peak PSS MB | stop under load: path | exit ms | ok | failed "
            "(worst round) | of which retry-safe | refused after port closed | exit codes |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for s in result["stacks"]:
        m = s["median"]
        if not m:
            continue
        sd = m["shutdown"]
        rows.append(
            f"| {s['label']} | {_f(m['idle_memory']['processes'])} | {_f(m['start_ms'], 1)} | "
            f"{_f(mb(m['idle_memory']['rss_kib']), 1)} | {_f(mb(m['idle_memory']['pss_kib']), 1)}"
            f" | {_f(mb(m['peak_memory']['rss_kib']), 1)} | "
            f"{_f(mb(m['peak_memory']['pss_kib']), 1)} | `{sd['path']}` | {_f(sd['exit_ms'])} | "
            f"{_f(sd['requests_ok'])} | {_f(sd['failed_max'])} | "
            f"{_f(sd.get('failed_retry_safe'))} | "
            f"{_f(sd['refused_after_stop'])} | {sd['exit_codes']} |")
    return "\n".join(rows) + "\n"


def h2_table(result):
    """poem-api over HTTP/2 beside HTTP/1.1: h2load for both protocols, and wrk's HTTP/1.1
    figure from the workloads above."""
    rows = []
    for s in result["stacks"]:
        m = s["median"] or {}
        for key, w in (m.get("h2") or {}).items():
            rows.append(
                f"| {s['label']} | {w['label']} | {_f(w['connections'])} × "
                f"{_f(w['streams_per_connection'])} | {_f(w['rps'])} | "
                f"{_ms(w['latency_mean_us'], 2)} | {_ms(w['latency_max_us'], 1)} | "
                f"{_f((w['failed'] or 0) + (w['errored'] or 0) + (w['timeout'] or 0))} | "
                f"{_f(w['non2xx'])} | {_f(w['server_cpu_pct'])} | "
                f"{_f(w['server_cpu_us_per_request'], 1)} | {_f(w['loadgen_cpu_pct'])} |")
        for wl, label in WORKLOADS[:2]:
            w = m.get("workloads", {}).get(wl) if m.get("h2") else None
            if w:
                rows.append(
                    f"| {s['label']} | {label} over HTTP/1.1 (wrk, above) | "
                    f"{_f(w['connections'])} × 1 | {_f(w['rps'])} | – | "
                    f"{_lat(w, 'latency_max_us', 1)} | "
                    f"{_f((w['errors'] or 0) - (w['errors_timeout'] or 0))} | {_f(w['non2xx'])} | "
                    f"{_f(w['server_cpu_pct'])} | {_f(w.get('server_cpu_us_per_request'), 1)} | "
                    f"{_f(w['loadgen_cpu_pct'])} |")
    if not rows:
        return ""
    argv = next((w["h2load_argv"] for s in result["stacks"] for w in
                 ((s["median"] or {}).get("h2") or {}).values()), "")
    return ("| Stack | Workload | connections × streams | req/s | mean ms | max ms | failed | "
            "non-2xx | server CPU % | server CPU µs / request | load generator CPU % |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows)
            + f"\n\nh2load as `{argv}` (for HTTP/2; `--h1` instead of `-m` for HTTP/1.1). "
            "h2load reports no percentiles, only the mean and the maximum. HTTP/2 multiplexes "
            "streams per connection where HTTP/1.1 sends one request at a time per connection, "
            "so the same connection count is more concurrency over HTTP/2; the h2load `--h1` "
            "row separates the protocol from the tool.\n")


def access_log_cost(result):
    rows = []
    for wl, label in WORKLOADS:
        a, b = _wl(result, "poem-api", wl), _wl(result, "poem-api-log", wl)
        if a and b and a["rps"]:
            rows.append(f"| {label} | {_f(a['rps'])} | {_f(b['rps'])} | "
                        f"{100 * (b['rps'] / a['rps'] - 1):+.1f}% | "
                        f"{_lat(a, 'latency_p99_us', 2)} → {_lat(b, 'latency_p99_us', 2)} |")
    if not rows:
        return ""
    return ("| Workload | poem-api req/s (log off) | with access log | change | p99 ms |\n"
            "|---|---:|---:|---:|---|\n" + "\n".join(rows) + "\n")


def markdown(result):
    parts = [
        "# Benchmark results: classic Python stacks and poem-api, side by side", "",
        header(result), "",
        "## Summary (medians)", "", markdown_tables(result),
        "## poem-api targets (ratios within this run)", "", targets_text(result),
        "## Workloads", "",
    ]
    for wl, label in WORKLOADS:
        conns = {w["name"]: w for w in result["settings"]["workloads"]}.get(wl)
        parts.append(workload_table(result, wl, conns["label"] if conns else label))
    parts.insert(len(parts) - 3, "CPU % is of one CPU, over the measured window: \"server\" "
                 "is the stack's process tree, \"wrk\" the load generator, \"other\" everything "
                 "else the shared machine ran meanwhile (the noise in these numbers). CPU µs per "
                 "request is the server's CPU time divided by the requests it completed, which "
                 "other users of the machine disturb far less than requests/s. Latencies marked "
                 "≥ are lower bounds: wrk records no latency for a response slower than its "
                 "timeout, so where those responses reach past a percentile, that percentile is "
                 "at least the timeout. Requests still waiting when a measurement ends are not "
                 "counted at all (closed-loop load).\n")
    parts += ["## Start, memory and stop", "", lifecycle_table(result),
              "Stop test: a client keeps the listed connections busy with keep-alive requests "
              "to the path shown, the stop signal goes to the stack's main process(es), and the "
              "client goes on until they have exited. \"failed\" counts requests that got no "
              "2xx answer (connection reset or closed before the response, timeout, or an "
              "error status); \"retry-safe\" is the part of those lost on a reused keep-alive "
              "connection closed before any byte of the response, which an HTTP client may "
              "retry by itself; \"refused\" counts connection attempts after the port closed, "
              "which a load balancer sends elsewhere.", ""]
    h2 = h2_table(result)
    if h2:
        parts += ["## HTTP/2 (h2load)", "", h2]
    alc = access_log_cost(result)
    if alc:
        parts += ["## Cost of poem-api's access log", "", alc]
    if "instructions" in result:
        parts += ["## Instructions per request (callgrind)", "",
                  instructions_markdown(result["instructions"])]
    failed = [(s["label"], r["round"], r["error"]) for s in result["stacks"]
              for r in s["rounds"] if r.get("error")]
    if failed:
        parts += ["## Failures", ""] + [f"- {l} round {n}: {e}" for l, n, e in failed] + [""]
    parts += ["![chart](chart.svg)", ""]
    return "\n".join(parts)


# ---------------------------------------------------------------- SVG chart

def svg(result):
    stacks = [s for s in result["stacks"] if s["median"]]
    bar_h, gap, label_w, panel_w, value_w = 13, 3, 190, 300, 125
    col_w = panel_w + value_w
    width = label_w + 2 * col_w + 20
    y = 0
    els = []

    def text(x, y, s, size=12, anchor="start", weight="normal", fill="#222"):
        els.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                   f'font-weight="{weight}" fill="{fill}">{escape(s)}</text>')

    def bars(x0, y0, items, fmt, title):
        """items: [(stack name, value or None)] drawn as horizontal bars, linear scale."""
        vmax = max([it[1] for it in items if it[1] is not None] or [1]) or 1
        text(x0, y0 + 11, title, 12, weight="bold")
        yy = y0 + 18
        for item in items:
            name, v = item[0], item[1]
            label = item[2] if len(item) > 2 else (fmt(v) if v is not None else "")
            if v is None:
                text(x0 + 2, yy + bar_h - 2, "n/a", 10, fill="#888")
            else:
                w = max(1.0, panel_w * v / vmax)
                els.append(f'<rect x="{x0}" y="{yy}" width="{w:.1f}" height="{bar_h}" '
                           f'fill="{COLORS.get(name, "#888")}"><title>{escape(LABELS.get(name, name))}:'
                           f' {escape(label)}</title></rect>')
                text(x0 + w + 4, yy + bar_h - 2, label, 10)
            yy += bar_h + gap
        return yy

    def stack_labels(y0):
        yy = y0 + 18
        for s in stacks:
            text(label_w - 8, yy + bar_h - 2, LABELS.get(s["name"], s["name"]), 11, "end")
            yy += bar_h + gap

    m = result["machine"]
    text(10, 20, "poem-api vs classic Python deployment stacks", 15, weight="bold")
    wrk = re.match(r"wrk \S+", result["load_generator"]["version"] or "")
    text(10, 38, f"{result['date'][:10]} · {m['cpu_model']} · {m['cores']} cores · "
         f"{wrk.group(0) if wrk else 'wrk'} · server on CPU {result['settings']['server_cpus']}, "
         f"wrk on CPU {result['settings']['load_cpus']} · medians of "
         f"{result['settings']['repeat']} round(s)"
         + (" · SMOKE RUN" if result.get("smoke") else ""), 11, fill="#555")
    y = 52
    wl_labels = {w["name"]: f"{w['label']} @ {w['connections']} conns"
                 for w in result["settings"]["workloads"]}
    for wl, label in WORKLOADS:
        lab = wl_labels.get(wl, label)
        text(10, y + 11, lab, 13, weight="bold", fill="#000")
        y += 16
        stack_labels(y)
        items = [(s["name"], (s["median"]["workloads"].get(wl) or {}).get("rps"))
                 for s in stacks]
        lat = []
        for s in stacks:
            w = s["median"]["workloads"].get(wl)
            if not w or w.get("latency_p99_us") is None:
                lat.append((s["name"], None))
                continue
            v = w["latency_p99_us"] / 1000
            cens = w.get("latency_p99_us_censored")
            lat.append((s["name"], v, (f"≥ {v:,.0f} ms (timeouts)" if cens else f"{v:,.1f} ms")))
        y1 = bars(label_w, y, items, lambda v: f"{v:,.0f}", "requests/s (higher is better)")
        bars(label_w + col_w, y, lat, lambda v: f"{v:,.1f} ms", "p99 latency (lower is better)")
        y = y1 + 12
    text(10, y + 11, "Memory (whole process tree)", 13, weight="bold", fill="#000")
    y += 16
    stack_labels(y)
    idle = [(s["name"], mb(s["median"]["idle_memory"]["pss_kib"])) for s in stacks]
    peak = [(s["name"], mb(s["median"]["peak_memory"]["pss_kib"])) for s in stacks]
    y1 = bars(label_w, y, idle, lambda v: f"{v:,.1f} MB", "idle PSS (MB; RSS in the table)")
    bars(label_w + col_w, y, peak, lambda v: f"{v:,.1f} MB", "peak PSS under load (MB)")
    y = y1 + 10
    height = y + 10
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">\n'
            f'<rect width="100%" height="100%" fill="#fff"/>\n' + "\n".join(els) + "\n</svg>\n")


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    path = argv[1]
    with open(path) as f:
        result = json.load(f)
    if "stacks" not in result and "servers" in result:  # bench/instructions --json
        md = instructions_markdown(result)
        with open(os.path.splitext(path)[0] + ".md", "w") as f:
            f.write(md)
        print(md)
        print(targets_text({"targets": instruction_targets(result)}))
        return
    timeout = result["load_generator"].get("timeout_s", 2)
    for s in result["stacks"]:
        s["median"] = aggregate(s["rounds"], timeout)
    result["targets"] = evaluate_targets(result)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    d = os.path.dirname(os.path.abspath(path))
    with open(os.path.join(d, "results.md"), "w") as f:
        f.write(markdown(result))
    with open(os.path.join(d, "chart.svg"), "w") as f:
        f.write(svg(result))
    print(markdown_tables(result))
    print(targets_text(result))


if __name__ == "__main__":
    main(sys.argv)
