#!/usr/bin/env bash
# Portcullis against the bare rustls terminator, full TLS 1.3 mTLS handshakes only, in
# alternating pairs a few seconds apart: the ratio of the two servers' CPU per handshake is
# taken within each pair, so a host that gets busier or quieter between minutes moves both
# sides of a ratio alike, and the median over the pairs discards the pairs it split. Each
# server is measured twice per pair: flat out (16 connections, as in run.sh) and at a fixed
# rate that neither server saturates, so that both spend the same share of their time idle
# and waking up.
#
# Usage: bench/peers/pairs.sh
# Environment: PAIRS=5, DURATION=6s, RATE=1500 (handshakes/s), RUN_DIR=target/peers,
#   PAIRS_DIR=RUN_DIR/results/pairs, SKIP_BUILD=1 (when the release binaries are current).
# JSON reports go to PAIRS_DIR, where summarize.py finds them for BENCHMARKS.md; the table
# is also printed. run.sh runs this after its rounds.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PEERS="$ROOT/bench/peers"
RUN="${RUN_DIR:-$ROOT/target/peers}"
OUT="${PAIRS_DIR:-$RUN/results/pairs}"
BIN="$ROOT/target/release"
PAIRS="${PAIRS:-5}"
DURATION="${DURATION:-6s}"
RATE="${RATE:-1500}"
SUT_CPU=0
LOAD_CPU=1
UPSTREAM_PORT=24082
ADMIN_PORT=24921
PORTCULLIS_PORT=24467
BARE_PORT=24468

# shellcheck source=bench/peers/lib.sh
source "$PEERS/lib.sh"

handshakes() { # handshakes NAME PORT PID EXTRA...: one measurement into OUT/NAME.json
    local name="$1" port="$2" pid="$3"
    shift 3
    load_into "$name" "$port" --mode full -c 16 -d "$DURATION" --server-pid "$pid" \
        --upstream-pid "$UPSTREAM_PID" "$@"
}

measure_pair() { # measure_pair N: both servers, each flat out and at RATE
    local pair="$1" order=(portcullis bare) server port pid
    # Odd pairs start with Portcullis, even pairs with bare, so a drift cancels out.
    [ $((pair % 2)) = 0 ] && order=(bare portcullis)
    for server in "${order[@]}"; do
        if [ "$server" = portcullis ]; then
            port=$PORTCULLIS_PORT
            start portcullis "$SUT_CPU" "$BIN/portcullis" run --config "$RUN/pairs.toml"
        else
            port=$BARE_PORT
            start_bare "$SUT_CPU" "$port"
        fi
        pid=$LAST_PID
        wait_port "$port"
        handshakes "$pair-$server-flat" "$port" "$pid"
        handshakes "$pair-$server-rate" "$port" "$pid" --rate "$RATE"
        stop "$pid"
    done
}

main() {
    prepare_stage
    portcullis_config "$RUN/pairs.toml" "$PORTCULLIS_PORT"

    start upstream "$LOAD_CPU" "$BIN/bench-upstream" --listen "127.0.0.1:$UPSTREAM_PORT" \
        --threads 1
    UPSTREAM_PID=$LAST_PID
    wait_port "$UPSTREAM_PORT"
    for pair in $(seq 1 "$PAIRS"); do
        log "pair $pair of $PAIRS"
        measure_pair "$pair"
    done
    python3 "$PEERS/summarize.py" --pairs "$OUT"
}

main "$@"
