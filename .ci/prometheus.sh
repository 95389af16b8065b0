#!/usr/bin/env bash
# Alerts and metrics, checked by the real tools:
#   1. the PrometheusRule's spec, as the production overlay renders it, passes
#      `promtool check rules`;
#   2. every alert has a unit test that fires it and one that keeps it silent, and
#      `promtool test rules` passes them (k8s/components/monitoring/tests/alerts.test.yaml);
#   3. a real Prometheus server loads those rules, scrapes a running poem-api's /metrics, and
#      after a burst of requests the scraped counters, the recording rules and an alert agree
#      with what was sent.
# The server is $POEM_API_BIN (.ci/run sets it to the release binary), else a debug build.
# Everything listens on 127.0.0.1 only; ports from PROMETHEUS_CHECK_PORTS (API, admin,
# Prometheus), default 19191 19192 19090. Takes about 20 s.
#
# Runs on a fresh Debian 12 machine as root; installs what it needs, idempotently.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

command -v kubectl >/dev/null || { echo "kubectl (with kustomize) is required" >&2; exit 1; }
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  step "install: prometheus (server and promtool)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version | head -n 1
[ -x .venv/bin/python ] || python3 -m venv .venv
# PyYAML reads the rendered manifest and the unit tests (checkov, from .ci/k8s.sh, brings the
# same version).
.venv/bin/python -c 'import yaml' 2>/dev/null ||
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "PyYAML==6.0.4"

read -r api_port admin_port prometheus_port <<<"${PROMETHEUS_CHECK_PORTS:-19191 19192 19090}"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step "rules: the PrometheusRule of k8s/overlays/production"
kubectl kustomize k8s/overlays/production >"$work/manifest.yaml"
cp k8s/components/monitoring/tests/alerts.test.yaml "$work/"
.venv/bin/python - "$work" <<'PY'
import json, sys, yaml
work = sys.argv[1]
objects = [o for o in yaml.safe_load_all(open(f"{work}/manifest.yaml")) if o]
rules = [o for o in objects if o["kind"] == "PrometheusRule"]
assert len(rules) == 1, f"{len(rules)} PrometheusRules in the production overlay"
spec = rules[0]["spec"]
# JSON is YAML: promtool reads it as a rule file.
json.dump(spec, open(f"{work}/poem-api.rules.json", "w"), indent=1)

# Every alert needs a test that fires it and one that keeps it silent.
alerts = [r["alert"] for g in spec["groups"] for r in g["rules"] if "alert" in r]
tests = yaml.safe_load(open(f"{work}/alerts.test.yaml"))["tests"]
cases = [c for t in tests for c in t.get("alert_rule_test", [])]
missing = []
for alert in alerts:
    mine = [c for c in cases if c["alertname"] == alert]
    if not any(c.get("exp_alerts") for c in mine):
        missing.append(f"{alert}: no test in which it fires")
    if not any(not c.get("exp_alerts") for c in mine):
        missing.append(f"{alert}: no test in which it stays silent")
unknown = sorted({c["alertname"] for c in cases} - set(alerts))
missing += [f"{name}: tested, but no such alert" for name in unknown]
if missing:
    sys.exit("alerts.test.yaml:\n  " + "\n  ".join(missing))
print(f"{len(alerts)} alerts, each with a firing and a silent test: {', '.join(alerts)}")
PY

step "promtool check rules"
promtool check rules "$work/poem-api.rules.json"

step "promtool test rules"
(cd "$work" && promtool test rules alerts.test.yaml)

step "real Prometheus: scrape a running poem-api, evaluate the rules"
if [ -n "${POEM_API_BIN:-}" ]; then
  bin=$POEM_API_BIN
else
  cargo build --locked --quiet
  bin=${CARGO_TARGET_DIR:-$PWD/target}/debug/poem-api
fi
echo "server: $bin"
# One request in five is answered 500 by the server's fault injection, so the error-budget
# alert has something real to see.
POEM_API_HOST=127.0.0.1 POEM_API_PORT=$api_port POEM_API_ADMIN_PORT=$admin_port \
  POEM_API_FAULT_ERROR_RATE=0.2 POEM_API_ACCESS_LOG=false \
  "$bin" >"$work/server.log" 2>&1 &
pids+=($!)

# Scrapes and evaluations every second, so the check takes seconds; the job name is the one
# the ServiceMonitor produces (job="poem-api", from its jobLabel), which the rules select.
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $work/poem-api.rules.json
scrape_configs:
  - job_name: poem-api
    static_configs:
      - targets: ["127.0.0.1:$admin_port"]
EOF
promtool check config "$work/prometheus.yml" >/dev/null
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prometheus_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)

fail() {
  printf '\nerror: %s\n--- server log (tail)\n' "$*" >&2
  tail -n 20 "$work/server.log" >&2
  printf -- '--- prometheus log (tail)\n' >&2
  tail -n 20 "$work/prometheus.log" >&2
  exit 1
}

# query EXPR: the instant vector EXPR as JSON lines {"metric": …, "value": …}; empty if none.
query() {
  .venv/bin/python - "http://127.0.0.1:$prometheus_port" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
base, expr = sys.argv[1:]
url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
try:
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
except OSError:
    sys.exit(0)  # not up yet: no result
for sample in body["data"]["result"]:
    print(json.dumps({"metric": sample["metric"], "value": float(sample["value"][1])}))
PY
}
# value EXPR: the single value of EXPR, or nothing.
value() { query "$1" | .venv/bin/python -c 'import json,sys; [print(json.loads(l)["value"]) for l in sys.stdin]'; }
# wait_for DESCRIPTION PYTHON-CONDITION-ON-v EXPR: polls EXPR's value, at most 60 s.
wait_for() {
  local description=$1 condition=$2 expr=$3 v
  for _ in $(seq 120); do
    v=$(value "$expr")
    if [ -n "$v" ] && .venv/bin/python -c "import sys; v=float(sys.argv[1]); sys.exit(0 if ($condition) else 1)" "$v"; then
      echo "ok: $description ($expr = $v)"
      return 0
    fi
    sleep 0.5
  done
  fail "$description: $expr = '${v:-no result}' after 60 s"
}

# Ready first (the admin port has no fault injection, so curl's retries cannot repeat an API
# request). Then a warm-up until both a 2xx and a 5xx series exist, scraped before the burst: a
# rate needs two samples, and a series first seen at its final value shows no increase (in a
# cluster too: the first 5xx after a restart is only counted from the next one on).
curl -sf -o /dev/null --retry 30 --retry-connrefused --retry-delay 1 "http://127.0.0.1:$admin_port/readyz" ||
  fail "the server did not become ready"
wait_for "Prometheus scrapes the admin port" 'v == 1' 'up{job="poem-api"}'
warm=0
while [ "$warm" -lt 100 ]; do
  curl -s -o /dev/null "http://127.0.0.1:$api_port/"
  warm=$((warm + 1))
  metrics=$(curl -s "http://127.0.0.1:$admin_port/metrics")
  if grep -q 'route="/",status="2xx"' <<<"$metrics" && grep -q 'route="/",status="5xx"' <<<"$metrics"; then
    break
  fi
done
wait_for "the $warm warm-up requests are scraped" "v == $warm" 'sum(http_requests_total{job="poem-api",route="/"})'

# The burst: 300 requests on one keep-alive connection, bounded and loopback only.
burst=300
curl -s "http://127.0.0.1:$api_port/?n=[1-$burst]" >/dev/null
sent=$((warm + burst))

wait_for "every request sent is counted, by method, route and status class" \
  "v == $sent" 'sum(http_requests_total{job="poem-api",listener="api",method="GET",route="/",status=~"2xx|5xx"})'
wait_for "the fault injection's 500s are counted as 5xx" \
  'v > 0' 'sum(http_requests_total{job="poem-api",route="/",status="5xx"})'
wait_for "the latency histogram counts the same requests" \
  "v == $sent" 'sum(http_request_duration_seconds_count{job="poem-api",route="/"})'
wait_for "the recording rule has the request rate of GET /" \
  'v > 0' 'sum(namespace_job_route:http_requests:rate5m{job="poem-api",route="/"})'
# 20% of requests fail; the bounds are more than six standard deviations wide for 300 requests.
wait_for "the recorded error ratio is the fault rate" \
  '0.05 < v < 0.5' 'namespace_job:http_request_errors:ratio_rate5m{job="poem-api"}'
# Its value depends on the machine's timing; that it exists shows the bucket series and its
# le="0.25" label are named as the rule expects.
wait_for "the recorded share of requests slower than 250 ms exists" \
  '0 <= v <= 1' 'namespace_job:http_request_slow:ratio_rate5m{job="poem-api"}'
wait_for "the fast error-budget alert is pending on the real series (it fires after its 'for')" \
  'v == 1' 'count(ALERTS{alertname="PoemApiErrorBudgetBurnFast",alertstate=~"pending|firing"})'
# The dropped-lines counter is 0 unless stdout falls behind; only its presence is checked.
if [ -n "$(query 'poem_api_log_lines_dropped_total{job="poem-api"}')" ]; then
  echo "ok: poem_api_log_lines_dropped_total is exposed (PoemApiLogLinesDropped watches it)"
else
  echo "note: this server build exposes no poem_api_log_lines_dropped_total; PoemApiLogLinesDropped cannot fire with it"
fi
[ -z "$(query 'ALERTS{alertname=~"PoemApiInstanceDown|PoemApiAbsent"}')" ] ||
  fail "an instance alert is active while the server is scraped: $(query 'ALERTS')"
echo "ok: no instance alert while the server is up"

# Every rule was evaluated, without an error (a wrong metric name is no error, hence the
# checks above).
.venv/bin/python - "http://127.0.0.1:$prometheus_port" <<'PY' || fail "a rule failed to evaluate"
import json, sys, urllib.request
with urllib.request.urlopen(f"{sys.argv[1]}/api/v1/rules", timeout=5) as r:
    groups = json.load(r)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [f'{r.get("name")}: {r.get("health")} {r.get("lastError", "")}' for r in rules if r["health"] != "ok"]
if bad or not rules:
    sys.exit("rules not evaluated cleanly:\n  " + "\n  ".join(bad or ["no rules loaded"]))
print(f"ok: {len(rules)} rules in {len(groups)} groups loaded and evaluated without error")
PY
