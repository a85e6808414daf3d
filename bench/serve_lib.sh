# Sourced by bench/retention.sh, bench/delete_issue.sh and bench/delete_project.sh: builds Picket
# and the load generator, makes a work directory W (removed
# on exit) with a fresh database, a superuser, the project bench/load, its
# $dsn and an API $token, and defines start and stop for `picket serve`.
# Set NAME (the work directory's prefix) and LOG_LEVEL before sourcing.
# KEEP=FILE keeps the server's log there (it goes with W otherwise).
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/picket-target}"
cargo build --release --locked -q -p picket -p picket-bench
BIN="${PICKET_BENCH_BIN:-$CARGO_TARGET_DIR/release/picket}"
LOAD="${PICKET_BENCH_LOAD:-$CARGO_TARGET_DIR/release/picket-load}"
W=$(mktemp -d "/tmp/picket-$NAME.XXXXXX")
trap 'pkill -f "$W" 2>/dev/null || true; [ -n "${KEEP:-}" ] && cp "$W/serve.log" "$KEEP"; rm -rf "$W"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PICKET_BIND="127.0.0.1:$port" PICKET_DATA_DIR="$W/data" PICKET_LOG="$LOG_LEVEL"
"$BIN" createuser --email bench@example.com --password benchmark-password --superuser >/dev/null
"$BIN" org create bench >/dev/null
dsn=$("$BIN" project create bench/load 2>/dev/null | tail -1)
token=$("$BIN" token create --email bench@example.com 2>/dev/null | tail -1)
start() { "$BIN" serve >>"$W/serve.log" 2>&1 & pid=$!; until curl -sf "http://127.0.0.1:$port/_health/" >/dev/null; do sleep 0.01; done; }
stop() { kill -TERM "$pid"; wait "$pid" || true; }

# The latency runs of bench/delete_issue.sh and bench/delete_project.sh: for
# each mode in MODES (default "quiet delete"), put the database back from
# $W/filled.sqlite3, start the server, send 20,000 5 KB events at 1,000/s
# with DSN $1 to project $2 and print their acceptance latency as a table
# row. In mode `delete`, 3 s in, `DELETE` the API path $3 and time it until
# the command $4 prints 0 (what is left to delete).
latency_runs() {
  local to_dsn=$1 to_project=$2 doomed=$3 left_cmd=$4
  echo "| run | p50 ms | p99 ms | p999 ms | max ms | deletion |"
  echo "|---|---|---|---|---|---|"
  for mode in ${MODES:-quiet delete}; do
    rm -f "$W"/data/picket.sqlite3*
    cp "$W/filled.sqlite3" "$W/data/picket.sqlite3"
    start
    local deleter=
    if [ "$mode" = delete ]; then
      (sleep 3; t0=$(date +%s.%N)
       curl -sf -H "Authorization: Bearer $token" -X DELETE -o /dev/null "http://127.0.0.1:$port$doomed"
       t1=$(date +%s.%N)
       while [ "$($left_cmd)" != 0 ]; do sleep 0.2; done
       t2=$(date +%s.%N)
       python3 -c "import sys; a,b,c=map(float,sys.argv[1:]); print(f'answered in {1000*(b-a):.0f} ms, gone after {c-a:.1f} s')" "$t0" "$t1" "$t2" >"$W/delete.out") &
      deleter=$!
    fi
    # What is deleted shrinks the event count: do not wait to see these processed.
    "$LOAD" --dsn "$to_dsn" --project "$to_project" --token "$token" --events 20000 --size-kb 5 --issues 100 --concurrency 16 --rate 1000 --drain-timeout 5 --json >"$W/$mode.json" || true
    local note=""
    if [ -n "$deleter" ]; then wait "$deleter"; note="$(cat "$W/delete.out")"; fi
    stop
    python3 - "$W/$mode.json" "$mode" "$note" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency_ms"]
print(f'| {sys.argv[2]} | {l["p50"]:.1f} | {l["p99"]:.1f} | {l["p999"]:.1f} | {l["max"]:.1f} | {sys.argv[3]} |')
PY
  done
}
