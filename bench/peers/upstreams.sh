#!/usr/bin/env bash
# What the way Portcullis reaches its upstream costs per connection. The same Portcullis, to
# the same upstream program, three ways: TCP mode over loopback TCP (one upstream connection
# per client connection, as in the side-by-side rounds), TCP mode over a Unix socket, and HTTP
# mode over loopback TCP, where upstream connections are pooled and outlive the client
# connections. Each is measured with full and with resumed TLS 1.3 handshakes (each with one
# request), all three a few seconds apart in each round, the order shifting every round. The
# peers are not run here: the side-by-side comparison keeps every server on TCP mode.
#
# Usage: bench/peers/upstreams.sh
# Environment: UPSTREAM_ROUNDS=3, DURATION=6s, RUN_DIR=target/peers,
#   UPSTREAMS_DIR=RUN_DIR/results/upstreams, SKIP_BUILD=1 (when the release binaries are
#   current).
# JSON reports go to UPSTREAMS_DIR, where summarize.py finds them for BENCHMARKS.md; the table
# is also printed. run.sh runs this after its rounds.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PEERS="$ROOT/bench/peers"
RUN="${RUN_DIR:-$ROOT/target/peers}"
OUT="${UPSTREAMS_DIR:-$RUN/results/upstreams}"
BIN="$ROOT/target/release"
ROUNDS="${UPSTREAM_ROUNDS:-3}"
DURATION="${DURATION:-6s}"
SUT_CPU=0
LOAD_CPU=1
UPSTREAM_PORT=24084
UPSTREAM_SOCKET="$RUN/upstream.sock"
ADMIN_PORT=24941
PORT=24487
WAYS=(tcp unix http)

# shellcheck source=bench/peers/lib.sh
source "$PEERS/lib.sh"

handshakes() { # handshakes NAME PID MODE: one run of MODE handshakes into OUT/NAME.json
    load_into "$1" "$PORT" --mode "$3" -c 16 -d "$DURATION" --server-pid "$2"
}

measure_round() { # measure_round N: Portcullis each way, starting one further along each round
    local round="$1" index way pid
    for index in 0 1 2; do
        way="${WAYS[$(((round - 1 + index) % 3))]}"
        start "portcullis-$way" "$SUT_CPU" "$BIN/portcullis" run --config "$RUN/upstream-$way.toml"
        pid=$LAST_PID
        wait_port "$PORT"
        handshakes "$round-$way-full" "$pid" full
        handshakes "$round-$way-resumed" "$pid" resumed
        stop "$pid"
    done
}

main() {
    prepare_stage
    portcullis_config "$RUN/upstream-tcp.toml" "$PORT"
    sed "s#^upstream = .*#upstream = \"unix:$UPSTREAM_SOCKET\"#" "$RUN/upstream-tcp.toml" \
        >"$RUN/upstream-unix.toml"
    sed 's#^protocol = .*#protocol = "http"#' "$RUN/upstream-tcp.toml" >"$RUN/upstream-http.toml"

    start upstream-tcp "$LOAD_CPU" "$BIN/bench-upstream" --listen "127.0.0.1:$UPSTREAM_PORT" \
        --threads 1
    start upstream-unix "$LOAD_CPU" "$BIN/bench-upstream" --listen "unix:$UPSTREAM_SOCKET" \
        --threads 1
    wait_port "$UPSTREAM_PORT"
    for _ in $(seq 50); do
        [ -S "$UPSTREAM_SOCKET" ] && break
        sleep 0.1
    done
    for round in $(seq 1 "$ROUNDS"); do
        log "upstream round $round of $ROUNDS"
        measure_round "$round"
    done
    python3 "$PEERS/summarize.py" --upstreams "$OUT"
}

main "$@"
