#!/usr/bin/env bash
# Sets up Vault or OpenBao PKI for Portcullis, idempotently:
#
#   1. a root CA in its own mount (ROOT_MOUNT, default pki_root), kept offline-ish: nothing but
#      the intermediate is signed by it;
#   2. an intermediate CA in the mount Portcullis uses (PKI_MOUNT, default pki_int), signed by
#      the root;
#   3. a role (ROLE, default web) allowing SPIFFE IDs under spiffe://TRUST_DOMAIN/, names under
#      ALLOWED_DOMAINS, IP SANs, server and client use, ECDSA P-256, at most CERT_MAX_TTL
#      (default 24h; CERT_TTL, for requests that name none, defaults to it);
#   4. the policy in portcullis-policy.hcl (POLICY, default portcullis) for that mount and role;
#   5. AppRole (APPROLE, default portcullis) with that policy; its role ID and a new secret ID
#      are written to OUT_DIR/role_id and OUT_DIR/secret_id (mode 0600).
#
# Talks to the server named by BAO_ADDR (or VAULT_ADDR) with the token in BAO_TOKEN (or
# VAULT_TOKEN): an operator's token, only for this set-up. Uses `bao`, else `vault`
# (VAULT_CLI overrides). Running it again changes nothing but the role settings, the policy
# and a fresh secret ID.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cli="${VAULT_CLI:-$(command -v bao || command -v vault || true)}"
[[ -n "$cli" ]] || { echo "bootstrap-pki: neither bao nor vault is on PATH" >&2; exit 1; }

# The bao CLI reads BAO_*, the vault CLI VAULT_*: give each what the other was given.
export BAO_ADDR="${BAO_ADDR:-${VAULT_ADDR:-}}" VAULT_ADDR="${VAULT_ADDR:-${BAO_ADDR:-}}"
export BAO_TOKEN="${BAO_TOKEN:-${VAULT_TOKEN:-}}" VAULT_TOKEN="${VAULT_TOKEN:-${BAO_TOKEN:-}}"
[[ -n "$BAO_ADDR" ]] || { echo "bootstrap-pki: set BAO_ADDR (or VAULT_ADDR)" >&2; exit 1; }

ROOT_MOUNT="${ROOT_MOUNT:-pki_root}"
PKI_MOUNT="${PKI_MOUNT:-pki_int}"
ROLE="${ROLE:-web}"
TRUST_DOMAIN="${TRUST_DOMAIN:-example.org}"
ALLOWED_DOMAINS="${ALLOWED_DOMAINS:-$TRUST_DOMAIN,localhost}"
CERT_MAX_TTL="${CERT_MAX_TTL:-24h}"
CERT_TTL="${CERT_TTL:-$CERT_MAX_TTL}"    # when a request names no ttl
ROOT_TTL="${ROOT_TTL:-87600h}"
INT_TTL="${INT_TTL:-43800h}"
POLICY="${POLICY:-portcullis}"
APPROLE="${APPROLE:-portcullis}"
TOKEN_TTL="${TOKEN_TTL:-1h}"
TOKEN_MAX_TTL="${TOKEN_MAX_TTL:-24h}"
OUT_DIR="${OUT_DIR:-./portcullis-vault}"

step() { echo "bootstrap-pki: $*"; }
# (Listed first, then matched: `grep -q` in a pipe would end the writer early under pipefail.)
mounted() { local all; all="$("$cli" secrets list -format=json)"; [[ "$all" == *"\"$1/\""* ]]; }
auth_enabled() { local all; all="$("$cli" auth list -format=json)"; [[ "$all" == *"\"$1/\""* ]]; }
# Where peers find each CA certificate and CRL (the AIA extension of what the mount signs).
aia() {
    "$cli" write "$1/config/urls" issuing_certificates="$BAO_ADDR/v1/$1/ca" \
        crl_distribution_points="$BAO_ADDR/v1/$1/crl" >/dev/null
}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if mounted "$ROOT_MOUNT"; then
    step "root mount $ROOT_MOUNT exists; kept"
else
    step "root CA in $ROOT_MOUNT"
    "$cli" secrets enable -path="$ROOT_MOUNT" pki >/dev/null
    "$cli" secrets tune -max-lease-ttl="$ROOT_TTL" "$ROOT_MOUNT" >/dev/null
    aia "$ROOT_MOUNT"
    "$cli" write -field=certificate "$ROOT_MOUNT/root/generate/internal" \
        common_name="$TRUST_DOMAIN Root CA" issuer_name=root key_type=ec key_bits=384 \
        ttl="$ROOT_TTL" >/dev/null
fi

if mounted "$PKI_MOUNT"; then
    step "intermediate mount $PKI_MOUNT exists; kept"
else
    step "intermediate CA in $PKI_MOUNT, signed by $ROOT_MOUNT"
    "$cli" secrets enable -path="$PKI_MOUNT" pki >/dev/null
    "$cli" secrets tune -max-lease-ttl="$INT_TTL" "$PKI_MOUNT" >/dev/null
    aia "$PKI_MOUNT"
    "$cli" write -field=csr "$PKI_MOUNT/intermediate/generate/internal" \
        common_name="$TRUST_DOMAIN Intermediate CA" key_type=ec key_bits=256 >"$work/int.csr"
    # pem_bundle: the intermediate followed by the root, so the issuer carries its chain.
    "$cli" write -field=certificate "$ROOT_MOUNT/root/sign-intermediate" \
        csr=@"$work/int.csr" format=pem_bundle ttl="$INT_TTL" >"$work/int.pem"
    "$cli" write "$PKI_MOUNT/intermediate/set-signed" certificate=@"$work/int.pem" >/dev/null
fi

step "role $PKI_MOUNT/roles/$ROLE (spiffe://$TRUST_DOMAIN/*, $ALLOWED_DOMAINS, max $CERT_MAX_TTL)"
"$cli" write "$PKI_MOUNT/roles/$ROLE" \
    allowed_domains="$ALLOWED_DOMAINS" allow_subdomains=true allow_bare_domains=true \
    allow_localhost=true allow_ip_sans=true allowed_uri_sans="spiffe://$TRUST_DOMAIN/*" \
    server_flag=true client_flag=true key_type=ec key_bits=256 \
    ttl="$CERT_TTL" max_ttl="$CERT_MAX_TTL" >/dev/null

step "policy $POLICY"
sed -e "s#\"pki_int/#\"$PKI_MOUNT/#g" -e "s#/web\"#/$ROLE\"#g" "$here/portcullis-policy.hcl" \
    | "$cli" policy write "$POLICY" - >/dev/null

if auth_enabled approle; then
    step "AppRole already enabled; kept"
else
    step "AppRole enabled"
    "$cli" auth enable approle >/dev/null
fi
"$cli" write "auth/approle/role/$APPROLE" token_policies="$POLICY" \
    token_ttl="$TOKEN_TTL" token_max_ttl="$TOKEN_MAX_TTL" token_type=service >/dev/null

umask 077
mkdir -p "$OUT_DIR"
"$cli" read -field=role_id "auth/approle/role/$APPROLE/role-id" >"$OUT_DIR/role_id"
"$cli" write -f -field=secret_id "auth/approle/role/$APPROLE/secret-id" >"$OUT_DIR/secret_id"
"$cli" read -field=certificate "$ROOT_MOUNT/cert/ca" >"$OUT_DIR/root-ca.pem"
chmod 0600 "$OUT_DIR/role_id" "$OUT_DIR/secret_id"
chmod 0644 "$OUT_DIR/root-ca.pem"
step "AppRole $APPROLE: role_id and secret_id in $OUT_DIR; root CA in $OUT_DIR/root-ca.pem"
