#!/usr/bin/env bash
# The keep-alive latency that Portcullis and each peer add over the direct path, measured in
# alternating rounds: each round runs every server once, a few seconds apart, and the order
# shifts by one server per round, so no server always comes first or last. Each server's
# figure is its own latency minus a plaintext baseline taken right before it, and the
# comparison with a peer is taken within each round, so a host that gets busier or quieter
# between minutes moves both sides of a difference alike.
#
# Usage: bench/peers/latency.sh
# Environment: LATENCY_ROUNDS=5, DURATION=6s, RATE=2000 (requests/s over 4 connections),
#   LATENCY_SERVERS="portcullis haproxy stunnel hitch nginx", RUN_DIR=target/peers,
#   LATENCY_DIR=RUN_DIR/results/latency, SKIP_INSTALL=1, SKIP_BUILD=1 (when the release
#   binaries are current).
# JSON reports go to LATENCY_DIR, where summarize.py finds them for BENCHMARKS.md; the table
# is also printed. run.sh runs this after its rounds.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PEERS="$ROOT/bench/peers"
RUN="${RUN_DIR:-$ROOT/target/peers}"
OUT="${LATENCY_DIR:-$RUN/results/latency}"
BIN="$ROOT/target/release"
ROUNDS="${LATENCY_ROUNDS:-5}"
DURATION="${DURATION:-6s}"
RATE="${RATE:-2000}"
read -r -a SERVERS <<<"${LATENCY_SERVERS:-portcullis haproxy stunnel hitch nginx}"
SUT_CPU=0
LOAD_CPU=1
UPSTREAM_PORT=24083
ADMIN_PORT=24931
PORT_BASE=24473

# shellcheck source=bench/peers/lib.sh
source "$PEERS/lib.sh"

latency() { # latency NAME PORT EXTRA...: one open-loop keep-alive run into OUT/NAME.json
    local name="$1" port="$2"
    shift 2
    load_into "$name" "$port" --mode keepalive -c 4 --rate "$RATE" -d "$DURATION" "$@"
}

measure_round() { # measure_round N: every server once, the order shifted by N - 1
    local round="$1" count=${#SERVERS[@]} index server port pid
    for index in $(seq 0 $((count - 1))); do
        server=${SERVERS[$(((index + round - 1) % count))]}
        port=$(server_port "$server" "$PORT_BASE")
        start_server "$server" "$port"
        pid=$LAST_PID
        if ! wait_port "$port"; then
            stop "$pid"
            continue
        fi
        sleep 0.5
        latency "$round-$server-direct" "$UPSTREAM_PORT" --plaintext || true
        latency "$round-$server-latency" "$port" --server-pid "$(tree_pids "$pid")" || true
        stop "$pid"
    done
}

main() {
    install_missing
    prepare_stage

    start upstream "$LOAD_CPU" "$BIN/bench-upstream" --listen "127.0.0.1:$UPSTREAM_PORT" \
        --threads 1
    wait_port "$UPSTREAM_PORT"
    for round in $(seq 1 "$ROUNDS"); do
        log "latency round $round of $ROUNDS"
        measure_round "$round"
    done
    python3 "$PEERS/summarize.py" --latency "$OUT"
}

main "$@"
