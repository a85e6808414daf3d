#!/usr/bin/env bash
# Runs Picket's standard benchmark scenarios and prints a table.
#
#   bench/run.sh            the standard scenarios (several minutes)
#   bench/run.sh --smoke    seconds; checks the harness works (CI runs this)
#
# Each scenario starts a fresh `picket serve` (release build) with its own
# data directory, sends events with `picket-load` from this machine, waits
# until every accepted event is processed, and reads Picket's CPU time,
# memory and disk use from /proc and the file system. Then `picket-pipeline`
# runs the digest stages in process, without HTTP, and reports each one.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/picket-target}"
mode="${1:-standard}"

cargo build --release --locked -q -p picket -p picket-bench
# PICKET_BENCH_BIN runs another build (an older commit's, for an A/B pair).
BIN="${PICKET_BENCH_BIN:-$CARGO_TARGET_DIR/release/picket}"
# PICKET_BENCH_LOAD runs another load generator (for the same kind of pair).
LOAD="${PICKET_BENCH_LOAD:-$CARGO_TARGET_DIR/release/picket-load}"
PIPELINE="$CARGO_TARGET_DIR/release/picket-pipeline"
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/picket-bench.XXXXXX)
trap 'pkill -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }

# run_scenario NAME EVENTS SIZE_KB ISSUES CONCURRENCY RATE
run_scenario() {
  local name=$1 events=$2 size=$3 issues=$4 conc=$5 rate=$6
  local dir="$WORK/$name" port; port=$(free_port); mkdir -p "$dir"
  export PICKET_BIND="127.0.0.1:$port" PICKET_DATA_DIR="$dir/data" PICKET_LOG=warn
  "$BIN" createuser --email bench@example.com --password benchmark-password --superuser >/dev/null
  "$BIN" org create bench >/dev/null
  local dsn token; dsn=$("$BIN" project create bench/load 2>/dev/null | tail -1)
  token=$("$BIN" token create --email bench@example.com 2>/dev/null | tail -1)
  local t0; t0=$(date +%s%N)
  "$BIN" serve >"$dir/serve.log" 2>&1 &
  local pid=$!
  until curl -sf "http://127.0.0.1:$port/_health/" >/dev/null; do sleep 0.005; done
  local startup_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  sleep 0.5
  local idle_rss; idle_rss=$(status_kb $pid VmRSS)
  local c0; c0=$(cpu_ticks $pid)
  # The generator's own CPU time (bash's `time`: user and system seconds):
  # it shares the machine's cores with Picket.
  local TIMEFORMAT='%U %S'
  { time "$LOAD" --dsn "$dsn" --token "$token" --events "$events" --size-kb "$size" --issues "$issues" --concurrency "$conc" --rate "$rate" --json >"$dir/report.json"; } 2>"$dir/load-time"
  local report; report=$(cat "$dir/report.json")
  local load_cpu; load_cpu=$(awk '{print $1 + $2}' "$dir/load-time")
  local c1; c1=$(cpu_ticks $pid)
  local peak_rss; peak_rss=$(status_kb $pid VmHWM)
  kill -TERM $pid; wait $pid || true
  local disk; disk=$(du -sb "$dir/data" | cut -f1)
  python3 - "$name" "$report" "$((c1 - c0))" "$TICKS" "$idle_rss" "$peak_rss" "$disk" "$startup_ms" "$load_cpu" <<'PY'
import json, sys
name, report, ticks, hz, idle, peak, disk, startup, load_cpu = sys.argv[1:]
r = json.loads(report)
processed = r["processed"] or 0
cpu_ms = int(ticks) * 1000 / int(hz)
row = {
    "scenario": name,
    "events": r["events_sent"],
    "event KB (json/gzip)": f'{r["event_json_bytes"]/1024:.1f}/{r["event_gzip_bytes"]/1024:.1f}',
    "accepted/s": round(r["accepted_per_sec"]),
    "processed/s": round(r["processed_per_sec"] or 0),
    "p50/p99/p999 ms": f'{r["latency_ms"]["p50"]:.1f}/{r["latency_ms"]["p99"]:.1f}/{r["latency_ms"]["p999"]:.1f}',
    "CPU ms/event": round(cpu_ms / max(processed, 1), 3),
    "load CPU ms/event": round(float(load_cpu) * 1000 / max(r["events_sent"], 1), 3),
    "RSS idle/peak MB": f"{int(idle)/1024:.0f}/{int(peak)/1024:.0f}",
    "disk B/event": round(int(disk) / max(processed, 1)),
    "start ms": int(startup),
    "issues": r["issues"],
    "statuses": r["statuses"],
}
ok = processed == r["accepted"] and r["accepted"] == r["events_sent"]
row["check"] = "ok" if ok else f'MISMATCH: sent {r["events_sent"]}, accepted {r["accepted"]}, processed {processed}'
print(json.dumps(row))
PY
}

rows=()
case "$mode" in
  --smoke)
    rows+=("$(run_scenario smoke 500 5 10 8 0)")
    pipeline_args=(--events 500 --issues 10) ;;
  standard|--standard)
    rows+=("$(run_scenario throughput-5k 200000 5 100 32 0)")
    rows+=("$(run_scenario throughput-50k 20000 50 100 16 0)")
    rows+=("$(run_scenario latency-1000rps 20000 5 100 16 1000)")
    pipeline_args=(--events 20000 --issues 100) ;;
  *) echo "usage: bench/run.sh [--smoke]" >&2; exit 2 ;;
esac
# Fails if it stores fewer events than it was given.
pipeline_report=$("$PIPELINE" "${pipeline_args[@]}" --dir "$WORK/pipeline")

python3 - "$pipeline_report" "${rows[@]}" <<'PY'
import json, sys
pipeline = sys.argv[1]
rows = [json.loads(r) for r in sys.argv[2:]]
cols = ["scenario", "events", "event KB (json/gzip)", "accepted/s", "processed/s", "p50/p99/p999 ms", "CPU ms/event", "load CPU ms/event", "RSS idle/peak MB", "disk B/event", "start ms", "issues", "check"]
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    print("| " + " | ".join(str(r[c]) for c in cols) + " |")
print()
print("digest pipeline in process (picket-pipeline, this tree's build):")
print(pipeline)
bad = [r for r in rows if r["check"] != "ok"]
if bad:
    print("\ncorrectness check failed:", *[r["check"] for r in bad], sep="\n  ")
    sys.exit(1)
PY
