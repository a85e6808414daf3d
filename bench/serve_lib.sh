# Sourced by bench/retention.sh and bench/delete_issue.sh: builds Picket
# and the load generator, makes a work directory W (removed
# on exit) with a fresh database, a superuser, the project bench/load, its
# $dsn and an API $token, and defines start and stop for `picket serve`.
# Set NAME (the work directory's prefix) and LOG_LEVEL before sourcing.
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/picket-target}"
cargo build --release --locked -q -p picket -p picket-bench
BIN="${PICKET_BENCH_BIN:-$CARGO_TARGET_DIR/release/picket}"
LOAD="${PICKET_BENCH_LOAD:-$CARGO_TARGET_DIR/release/picket-load}"
W=$(mktemp -d "/tmp/picket-$NAME.XXXXXX")
trap 'pkill -f "$W" 2>/dev/null || true; rm -rf "$W"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PICKET_BIND="127.0.0.1:$port" PICKET_DATA_DIR="$W/data" PICKET_LOG="$LOG_LEVEL"
"$BIN" createuser --email bench@example.com --password benchmark-password --superuser >/dev/null
"$BIN" org create bench >/dev/null
dsn=$("$BIN" project create bench/load 2>/dev/null | tail -1)
token=$("$BIN" token create --email bench@example.com 2>/dev/null | tail -1)
start() { "$BIN" serve >>"$W/serve.log" 2>&1 & pid=$!; until curl -sf "http://127.0.0.1:$port/_health/" >/dev/null; do sleep 0.01; done; }
stop() { kill -TERM "$pid"; wait "$pid" || true; }
