#!/usr/bin/env bash
# Side-by-side run: haproxy, stunnel, hitch, nginx (stream), Portcullis and the bare rustls
# terminator, each with the same ECDSA P-256 certificates, a required client certificate, the
# same upstream (bench-upstream) and the same load (portcullis-load). The server under test is
# pinned to CPU 0, the load client and the upstream to CPU 1. Writes bench/BENCHMARKS.md and
# bench/benchmarks.png from the JSON results.
#
# Usage: bench/peers/run.sh
# Environment:
#   DURATION=10s     length of each timed measurement
#   WARM_UP=1s       the same load, unrecorded, before each measurement
#   IDLE_CONNS=5000  connections held for the memory measurement
#   REPEAT=3         rounds; each runs every server once, BENCHMARKS.md shows medians
#   SERVERS="haproxy stunnel hitch nginx portcullis bare"   which servers to run
#   RUN_DIR=target/peers   scratch folder (certificates, configs, logs, JSON results)
#   SKIP_INSTALL=1   do not apt-get/pip anything
#   ROTATION=0       skip the long zero-downtime run (bench/peers/rotation.sh)
#   PAIRS=5          Portcullis / bare handshake pairs after the rounds (bench/peers/pairs.sh)
#   LATENCY_ROUNDS=5 alternating added-latency rounds after those (bench/peers/latency.sh;
#                    0 skips them)
#   UPSTREAM_ROUNDS=3  Portcullis over a TCP upstream, a Unix-socket upstream and a pooled
#                    HTTP-mode upstream, a few seconds apart (bench/peers/upstreams.sh; 0 skips)
# Every load is bounded in time, and only 127.0.0.1 is used.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PEERS="$ROOT/bench/peers"
RUN="${RUN_DIR:-$ROOT/target/peers}"
DURATION="${DURATION:-10s}"
WARM_UP="${WARM_UP:-1s}"
IDLE_CONNS="${IDLE_CONNS:-5000}"
REPEAT="${REPEAT:-3}"
SERVERS="${SERVERS:-haproxy stunnel hitch nginx portcullis bare}"
SUT_CPU=0
LOAD_CPU=1
UPSTREAM_PORT=24080
ADMIN_PORT=24901
BIN="$ROOT/target/release"

# shellcheck source=bench/peers/lib.sh
source "$PEERS/lib.sh"

# --- the load -------------------------------------------------------------------------------
load() { # load NAME PORT PIDS EXTRA...: one measurement, JSON into RESULTS/NAME.json
    local name="$1" port="$2" pids="$3"
    shift 3
    local pid_args=(--upstream-pid "$UPSTREAM_PID")
    [ -n "$pids" ] && pid_args+=(--server-pid "$pids")
    log "  $name"
    taskset -c "$LOAD_CPU" "$BIN/portcullis-load" --target "127.0.0.1:$port" \
        --ca "$RUN/certs/ca.pem" --cert "$RUN/certs/client.pem" --key "$RUN/certs/client.key" \
        --group X25519 --tls 1.3 --warm-up "$WARM_UP" "${pid_args[@]}" \
        --json-out "$RESULTS/$name.json" "$@" \
        >"$RESULTS/$name.txt" 2>"$RESULTS/$name.err" \
        || log "  $name failed: $(tail -1 "$RESULTS/$name.err")"
}

measure() { # measure SERVER PORT PIDS
    local server="$1" port="$2" pids="$3"
    load "$server-full" "$port" "$pids" --mode full -c 16 -d "$DURATION"
    load "$server-resumed" "$port" "$pids" --mode resumed -c 16 -d "$DURATION"
    # TLS 1.2: OpenSSL serves an ECDSA P-256 certificate only to clients offering P-256.
    load "$server-resumed12" "$port" "$pids" --mode resumed -c 16 -d "$DURATION" \
        --tls 1.2 --tls12-resume session-id --group X25519,secp256r1
    load "$server-keepalive" "$port" "$pids" --mode keepalive -c 32 -d "$DURATION"
    # The plaintext baseline right before, so added latency compares neighbours in time.
    load "$server-direct-latency" "$UPSTREAM_PORT" "" --plaintext --mode keepalive -c 4 \
        --rate 2000 -d "$DURATION"
    load "$server-latency" "$port" "$pids" --mode keepalive -c 4 --rate 2000 -d "$DURATION"
    load "$server-download" "$port" "$pids" --mode bulk --direction download --size-mb 64 \
        -c 1 -d "$DURATION"
    load "$server-upload" "$port" "$pids" --mode bulk --direction upload --size-mb 64 \
        -c 1 -d "$DURATION"
    load "$server-idle" "$port" "$pids" --mode idle -c "$IDLE_CONNS" --hold 2s -d 120s \
        --timeout 30s
}

run_server() { # run_server NAME: start it pinned to the SUT CPU, measure, stop
    local name="$1" port pid
    port=$(server_port "$name" 24443)
    start_server "$name" "$port" || return 1
    pid=$LAST_PID
    log "$name (pid $pid) on CPU $SUT_CPU, port $port"
    if ! wait_port "$port"; then
        tail -5 "$RUN/$name.log" >&2 || true
        stop "$pid"
        return 0
    fi
    sleep 0.5
    measure "$name" "$port" "$(tree_pids "$pid")"
    stop "$pid"
}

versions() {
    {
        echo "nproc: $(nproc)"
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
        echo "kernel: $(uname -r)"
        echo "haproxy: $(haproxy -v 2>&1 | head -1)"
        echo "stunnel: $(stunnel4 -version 2>&1 | grep -m1 '^stunnel')"
        echo "hitch: $(hitch --version 2>&1 | head -1)"
        echo "nginx: $(nginx -v 2>&1 | head -1)"
        echo "openssl: $(openssl version)"
        echo "rustc: $(rustc --version)"
        echo "rustls: $(grep -A1 '^name = "rustls"$' Cargo.lock | sed -n 2p | cut -d'"' -f2)"
        echo "portcullis: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "duration: $DURATION"
        echo "idle_connections: $IDLE_CONNS"
        echo "rounds: $REPEAT"
    } >"$RUN/results/machine.txt"
}

main() {
    install_missing
    log "building (release)"
    cargo build --release -q -p portcullis-bench -p portcullis-proxy --bins
    rm -rf "$RUN/results"
    mkdir -p "$RUN/results"
    ulimit -n "$(ulimit -Hn)"
    if [ "$(ulimit -n)" -lt $((IDLE_CONNS * 2 + 1000)) ]; then
        log "open files limit $(ulimit -n) is too low for $IDLE_CONNS idle connections"
        exit 1
    fi
    "$BIN/bench-certs" --out "$RUN/certs" --rotation-pairs 64 >/dev/null
    versions

    start upstream "$LOAD_CPU" "$BIN/bench-upstream" --listen "127.0.0.1:$UPSTREAM_PORT" \
        --threads 1
    UPSTREAM_PID=$LAST_PID
    wait_port "$UPSTREAM_PORT"
    for round in $(seq 1 "$REPEAT"); do
        RESULTS="$RUN/results/round-$round"
        mkdir -p "$RESULTS"
        log "round $round of $REPEAT"
        log "direct to the upstream (plaintext baseline)"
        load direct-keepalive "$UPSTREAM_PORT" "" --plaintext --mode keepalive -c 32 \
            -d "$DURATION"
        load direct-latency "$UPSTREAM_PORT" "" --plaintext --mode keepalive -c 4 \
            --rate 2000 -d "$DURATION"
        for server in $SERVERS; do
            run_server "$server"
        done
        if [ "${ROTATION:-1}" = 1 ]; then
            SKIP_BUILD=1 SKIP_SUMMARY=1 RUN_DIR="$RUN" RESULTS_DIR="$RESULTS" \
                bash "$PEERS/rotation.sh"
        fi
    done
    # A failed pairs stage must not cost the rounds their summary.
    SKIP_BUILD=1 RUN_DIR="$RUN" PAIRS_DIR="$RUN/results/pairs" bash "$PEERS/pairs.sh" \
        >/dev/null || log "the handshake pairs failed; BENCHMARKS.md goes without them"
    if [ "${LATENCY_ROUNDS:-5}" != 0 ]; then
        SKIP_BUILD=1 SKIP_INSTALL=1 RUN_DIR="$RUN" LATENCY_DIR="$RUN/results/latency" \
            bash "$PEERS/latency.sh" >/dev/null \
            || log "the latency rounds failed; BENCHMARKS.md goes without them"
    fi
    if [ "${UPSTREAM_ROUNDS:-3}" != 0 ]; then
        SKIP_BUILD=1 RUN_DIR="$RUN" UPSTREAMS_DIR="$RUN/results/upstreams" \
            bash "$PEERS/upstreams.sh" >/dev/null \
            || log "the upstream rounds failed; BENCHMARKS.md goes without them"
    fi
    python3 "$PEERS/summarize.py" "$RUN/results" "$ROOT/bench/BENCHMARKS.md" \
        "$ROOT/bench/benchmarks.png" "$ROOT/target/criterion"
    log "wrote bench/BENCHMARKS.md and bench/benchmarks.png"
}

main "$@"
