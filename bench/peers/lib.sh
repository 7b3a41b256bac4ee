#!/usr/bin/env bash
# Helpers shared by the scripts in bench/peers: installing the peers, starting pinned
# processes (stopped by their own pid only), waiting for ports, rendering the configuration
# templates, starting each server under test. Sourced, not run.

log() { echo "bench/peers: $*" >&2; }

install_missing() {
    [ "${SKIP_INSTALL:-}" = 1 ] && return 0
    local wanted=(haproxy stunnel4 hitch nginx libnginx-mod-stream python3-pip) missing=()
    for pkg in "${wanted[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    if ! python3 -c 'import matplotlib' 2>/dev/null; then
        log "installing matplotlib (pip)"
        python3 -m pip install --quiet matplotlib 2>/dev/null \
            || python3 -m pip install --quiet --break-system-packages matplotlib
    fi
}

# --- processes we start, stopped by their own pid only -------------------------------------
STARTED=()
cleanup() {
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

start() { # start NAME CPU COMMAND...: runs COMMAND pinned to CPU, logs to RUN/NAME.log
    local name="$1" cpu="$2"
    shift 2
    taskset -c "$cpu" "$@" >"$RUN/$name.log" 2>&1 &
    LAST_PID=$!
    STARTED+=("$LAST_PID")
}

stop() { # stop PID: TERM, then KILL after 10 s
    local pid="$1"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

wait_port() { # wait_port PORT: up to 15 s
    for _ in $(seq 150); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "nothing listens on port $1"
    return 1
}

tree_pids() { # tree_pids PID: the process and its children, comma-separated
    local pids="$1" child
    for child in $(pgrep -P "$1" || true); do
        pids="$pids,$child"
    done
    echo "$pids"
}

render() { # render TEMPLATE OUT PORT
    sed -e "s#@RUN@#$RUN#g" -e "s#@CERTS@#$RUN/certs#g" -e "s#@PORT@#$3#g" \
        -e "s#@UPSTREAM_PORT@#$UPSTREAM_PORT#g" -e "s#@ADMIN_PORT@#$ADMIN_PORT#g" \
        -e "s#@PROTOCOL@#tcp#g" "$1" >"$2"
}

portcullis_config() { # portcullis_config OUT PORT: serving files in RUN/portcullis, config OUT
    mkdir -p "$RUN/portcullis"
    cp "$RUN/certs/server.pem" "$RUN/certs/server.key" "$RUN/certs/ca.pem" "$RUN/portcullis/"
    render "$PEERS/portcullis.toml.in" "$1" "$2"
}

start_bare() { # start_bare CPU PORT: the bare rustls terminator with the shared certificates
    start bare "$1" "$BIN/bare-terminator" --listen "127.0.0.1:$2" \
        --cert "$RUN/certs/server.pem" --key "$RUN/certs/server.key" --ca "$RUN/certs/ca.pem"
}

load_into() { # load_into NAME PORT EXTRA...: one portcullis-load run on LOAD_CPU, TLS 1.3 with
    # X25519 and the shared client certificate; JSON, text and errors into OUT/NAME.*
    local name="$1" port="$2"
    shift 2
    taskset -c "$LOAD_CPU" "$BIN/portcullis-load" --target "127.0.0.1:$port" \
        --ca "$RUN/certs/ca.pem" --cert "$RUN/certs/client.pem" --key "$RUN/certs/client.key" \
        --group X25519 --tls 1.3 --warm-up 1s --json-out "$OUT/$name.json" "$@" \
        >"$OUT/$name.txt" 2>"$OUT/$name.err" \
        || { log "$name failed: $(tail -1 "$OUT/$name.err")"; return 1; }
}

prepare_stage() { # prepare_stage: build (unless SKIP_BUILD=1), empty OUT, make missing certs
    if [ "${SKIP_BUILD:-}" != 1 ]; then
        log "building (release)"
        cargo build --release -q -p portcullis-bench -p portcullis-proxy --bins
    fi
    rm -rf "$OUT"
    mkdir -p "$OUT"
    [ -f "$RUN/certs/server-combined.pem" ] || "$BIN/bench-certs" --out "$RUN/certs" >/dev/null
}

# Every server the scripts can start, in a fixed order that gives each its own port.
ALL_SERVERS=(haproxy stunnel hitch nginx portcullis bare)

server_port() { # server_port NAME BASE: the port NAME listens on, BASE plus its place above
    local index
    for index in "${!ALL_SERVERS[@]}"; do
        [ "${ALL_SERVERS[$index]}" = "$1" ] && { echo $(($2 + index)); return 0; }
    done
    log "unknown server $1"
    return 1
}

start_server() { # start_server NAME PORT: one server under test on SUT_CPU; pid in LAST_PID
    local name="$1" port="$2"
    case "$name" in
        haproxy)
            render "$PEERS/haproxy.cfg.in" "$RUN/haproxy.cfg" "$port"
            start haproxy "$SUT_CPU" haproxy -db -f "$RUN/haproxy.cfg" ;;
        stunnel)
            render "$PEERS/stunnel.conf.in" "$RUN/stunnel.conf" "$port"
            start stunnel "$SUT_CPU" stunnel4 "$RUN/stunnel.conf" ;;
        hitch)
            render "$PEERS/hitch.conf.in" "$RUN/hitch.conf" "$port"
            start hitch "$SUT_CPU" hitch --config="$RUN/hitch.conf" ;;
        nginx)
            render "$PEERS/nginx.conf.in" "$RUN/nginx.conf" "$port"
            start nginx "$SUT_CPU" nginx -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log" ;;
        portcullis)
            portcullis_config "$RUN/portcullis.toml" "$port"
            start portcullis "$SUT_CPU" "$BIN/portcullis" run --config "$RUN/portcullis.toml" ;;
        bare)
            start_bare "$SUT_CPU" "$port" ;;
        *) log "unknown server $name"; return 1 ;;
    esac
}
