#!/usr/bin/env bash
# What a Unix-socket upstream saves Portcullis per connection: the same Portcullis forwarding
# to the same upstream program over loopback TCP or over a Unix socket, in alternating pairs
# a few seconds apart, each measured with full and with resumed TLS 1.3 handshakes (each
# with one request). The peers are not run here: the side-by-side comparison keeps every
# server on the same TCP upstream.
#
# Usage: bench/peers/unix.sh
# Environment: UNIX_PAIRS=3, DURATION=6s, RUN_DIR=target/peers, UNIX_DIR=RUN_DIR/results/unix,
#   SKIP_BUILD=1 (when the release binaries are current).
# JSON reports go to UNIX_DIR, where summarize.py finds them for BENCHMARKS.md; the table is
# also printed. run.sh runs this after its rounds.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PEERS="$ROOT/bench/peers"
RUN="${RUN_DIR:-$ROOT/target/peers}"
OUT="${UNIX_DIR:-$RUN/results/unix}"
BIN="$ROOT/target/release"
PAIRS="${UNIX_PAIRS:-3}"
DURATION="${DURATION:-6s}"
SUT_CPU=0
LOAD_CPU=1
UPSTREAM_PORT=24084
UPSTREAM_SOCKET="$RUN/upstream.sock"
ADMIN_PORT=24941
PORT=24487

# shellcheck source=bench/peers/lib.sh
source "$PEERS/lib.sh"

handshakes() { # handshakes NAME PID MODE: one run of MODE handshakes into OUT/NAME.json
    local name="$1" pid="$2" mode="$3"
    taskset -c "$LOAD_CPU" "$BIN/portcullis-load" --target "127.0.0.1:$PORT" \
        --ca "$RUN/certs/ca.pem" --cert "$RUN/certs/client.pem" --key "$RUN/certs/client.key" \
        --group X25519 --tls 1.3 --warm-up 1s --mode "$mode" -c 16 -d "$DURATION" \
        --server-pid "$pid" --json-out "$OUT/$name.json" \
        >"$OUT/$name.txt" 2>"$OUT/$name.err" \
        || { log "$name failed: $(tail -1 "$OUT/$name.err")"; return 1; }
}

measure_pair() { # measure_pair N: Portcullis over TCP and over the Unix socket
    local pair="$1" order=(tcp unix) upstream pid
    # Odd pairs start over TCP, even pairs over the Unix socket, so a drift cancels out.
    [ $((pair % 2)) = 0 ] && order=(unix tcp)
    for upstream in "${order[@]}"; do
        start "portcullis-$upstream" "$SUT_CPU" "$BIN/portcullis" run \
            --config "$RUN/unix-$upstream.toml"
        pid=$LAST_PID
        wait_port "$PORT"
        handshakes "$pair-$upstream-full" "$pid" full
        handshakes "$pair-$upstream-resumed" "$pid" resumed
        stop "$pid"
    done
}

main() {
    prepare_stage
    portcullis_config "$RUN/unix-tcp.toml" "$PORT"
    sed "s#^upstream = .*#upstream = \"unix:$UPSTREAM_SOCKET\"#" "$RUN/unix-tcp.toml" \
        >"$RUN/unix-unix.toml"

    start upstream-tcp "$LOAD_CPU" "$BIN/bench-upstream" --listen "127.0.0.1:$UPSTREAM_PORT" \
        --threads 1
    start upstream-unix "$LOAD_CPU" "$BIN/bench-upstream" --listen "unix:$UPSTREAM_SOCKET" \
        --threads 1
    wait_port "$UPSTREAM_PORT"
    for _ in $(seq 50); do
        [ -S "$UPSTREAM_SOCKET" ] && break
        sleep 0.1
    done
    for pair in $(seq 1 "$PAIRS"); do
        log "Unix-socket pair $pair of $PAIRS"
        measure_pair "$pair"
    done
    python3 "$PEERS/summarize.py" --unix "$OUT"
}

main "$@"
