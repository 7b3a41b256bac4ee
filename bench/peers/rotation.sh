#!/usr/bin/env bash
# The long zero-downtime benchmark: Portcullis (files source, permissive) under sustained
# load, first steady, then rotated every second; halfway through the rest its trust bundle
# gains a second CA, and later it switches to strict. Two load clients run side by side:
# keep-alive requests at a fixed rate (carrying the events) and new full handshakes at a
# fixed rate. Portcullis is pinned to CPU 0, the clients and the upstream to CPU 1.
# A control pass follows: the same clients on the same schedule against a fresh Portcullis,
# with nothing injected, so the steady and "rotating" periods differ only by what the
# machine did meanwhile. Results: RESULTS_DIR/rotation-{keepalive,full}.{json,txt} and
# RESULTS_DIR/rotation-control-{keepalive,full}.{json,txt} (RESULTS_DIR defaults to
# RUN_DIR/results); then BENCHMARKS.md is regenerated.
#
# Environment: ROTATION_LENGTH=120 (seconds in all), ROTATION_STEADY=60 (seconds before the
# first rotation), ROTATION_CONTROL=0 (skip the control pass), RUN_DIR=target/peers,
# SKIP_BUILD=1 (when run.sh already built).
# The steady and the rotating periods are equally long, so their p99s rest on as many
# requests and are as exposed to the machine's own hiccups.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PEERS="$ROOT/bench/peers"
RUN="${RUN_DIR:-$ROOT/target/peers}"
RESULTS="${RESULTS_DIR:-$RUN/results}"
BIN="$ROOT/target/release"
LENGTH="${ROTATION_LENGTH:-120}"
STEADY="${ROTATION_STEADY:-60}"
SUT_CPU=0
LOAD_CPU=1
UPSTREAM_PORT=24081
ADMIN_PORT=24911
PORT=24457

# shellcheck source=bench/peers/lib.sh
source "$PEERS/lib.sh"

main() {
    if [ "${SKIP_BUILD:-}" != 1 ]; then
        log "building (release)"
        cargo build --release -q -p portcullis-bench -p portcullis-proxy --bins
    fi
    mkdir -p "$RESULTS" "$RUN/rotation"
    [ -f "$RUN/certs/rotation/63/cert.pem" ] \
        || "$BIN/bench-certs" --out "$RUN/certs" --rotation-pairs 64 >/dev/null

    start rotation-upstream "$LOAD_CPU" "$BIN/bench-upstream" \
        --listen "127.0.0.1:$UPSTREAM_PORT" --threads 1
    local upstream=$LAST_PID
    wait_port "$UPSTREAM_PORT"
    pass rotation inject
    [ "${ROTATION_CONTROL:-1}" = 1 ] && pass rotation-control none
    stop "$upstream"

    if [ "${SKIP_SUMMARY:-}" != 1 ] && [ -f "$RUN/results/machine.txt" ]; then
        python3 "$PEERS/summarize.py" "$RUN/results" "$ROOT/bench/BENCHMARKS.md" \
            "$ROOT/bench/benchmarks.png" "$ROOT/target/criterion"
        log "regenerated bench/BENCHMARKS.md"
    fi
}

pass() { # pass NAME inject|none: one run of both clients against a freshly started Portcullis
    local name="$1" inject="$2" serving="$RUN/rotation"
    cp "$RUN/certs/server.pem" "$RUN/certs/server.key" "$RUN/certs/ca.pem" "$serving/"
    sed -e "s#@RUN@/portcullis#$serving#g" -e "s#@PORT@#$PORT#g" \
        -e "s#@UPSTREAM_PORT@#$UPSTREAM_PORT#g" -e "s#@ADMIN_PORT@#$ADMIN_PORT#g" \
        -e "s#@PROTOCOL@#tcp#g" -e 's#^mode = "strict"#mode = "permissive"#' \
        "$PEERS/portcullis.toml.in" >"$RUN/rotation.toml"
    start "$name-portcullis" "$SUT_CPU" "$BIN/portcullis" run --config "$RUN/rotation.toml"
    local pid=$LAST_PID
    wait_port "$PORT"
    sleep 0.5

    local pairs=() trust_at=$((STEADY + (LENGTH - STEADY) / 2))
    local strict_at=$((STEADY + 2 * (LENGTH - STEADY) / 3))
    for n in $(seq 0 63); do pairs+=("$RUN/certs/rotation/$n"); done
    local common=(--target "127.0.0.1:$PORT" --ca "$RUN/certs/ca.pem"
        --cert "$RUN/certs/client.pem" --key "$RUN/certs/client.key"
        --group X25519 --tls 1.3 -d "${LENGTH}s" --timeout 10s --warm-up 2s --bucket 250ms)
    local events=(--steady-until "${STEADY}s" --events-every 1s)
    if [ "$inject" = inject ]; then
        log "rotation: ${LENGTH}s, steady for ${STEADY}s, then a rotation every second"
        events=(--admin "127.0.0.1:$ADMIN_PORT"
            --rotate-after "${STEADY}s" --rotate-every 1s
            --rotate-cert-to "$serving/server.pem" --rotate-key-to "$serving/server.key"
            --rotate-from "$(IFS=,; echo "${pairs[*]}")"
            --replace-file "${trust_at}s:$RUN/certs/bundle.pem:$serving/ca.pem"
            --mode-switch "${strict_at}s:strict")
    else
        log "control: ${LENGTH}s on the same schedule, nothing injected"
    fi
    taskset -c "$LOAD_CPU" "$BIN/portcullis-load" "${common[@]}" --mode keepalive -c 16 \
        --rate 1000 --server-pid "$pid" "${events[@]}" \
        --json-out "$RESULTS/$name-keepalive.json" >"$RESULTS/$name-keepalive.txt" 2>&1 &
    local keepalive=$!
    taskset -c "$LOAD_CPU" "$BIN/portcullis-load" "${common[@]}" --mode full -c 8 \
        --rate 100 --steady-until "${STEADY}s" --events-every 1s \
        --json-out "$RESULTS/$name-full.json" >"$RESULTS/$name-full.txt" 2>&1 &
    local full=$!
    wait "$keepalive" \
        || log "$name: keep-alive client failed: $(tail -1 "$RESULTS/$name-keepalive.txt")"
    wait "$full" || log "$name: handshake client failed: $(tail -1 "$RESULTS/$name-full.txt")"
    stop "$pid"
}

main "$@"
