#!/usr/bin/env bash
# Checks the Consul files without Consul (it cannot be installed on the build machine):
# every .hcl file here parses as HCL2 (python-hcl2), and each file has the top-level shape
# its kind needs (agent fragments, ACL rules, a service definition, a config entry).
# Consul's own validation (`consul validate`, `consul config write`) is NOT run.
#
# HCL_VENV: where python-hcl2 lives (default: a venv under ${XDG_CACHE_HOME:-~/.cache},
# created with pip on first use).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${HCL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-deploy-venv}"
if ! "$venv/bin/python" -c 'import hcl2' >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'python-hcl2==8.1.4'
fi

"$venv/bin/python" - "$here" <<'PY'
import pathlib, sys
import hcl2

here = pathlib.Path(sys.argv[1])
# file -> top-level keys it must have
shapes = {
    "agent-connect.hcl": {"connect", "acl"},
    "agent-connect-vault-ca.hcl": {"connect"},
    "acl-portcullis-payments.hcl": {"service", "node_prefix"},
    "acl-prometheus.hcl": {"service_prefix", "node_prefix"},
    "intentions/payments.hcl": {"Kind", "Name", "Sources"},
    "services/payments.hcl": {"service"},
    "services/payments-connect-native.hcl": {"service"},
}
failed = False
files = sorted(here.glob("*.hcl")) + sorted(here.glob("*/*.hcl"))
for path in files:
    name = str(path.relative_to(here))
    try:
        doc = hcl2.load(open(path))
    except Exception as err:  # the parser raises several exception types
        print(f"FAIL  deploy/consul/{name}: {err}")
        failed = True
        continue
    missing = shapes.get(name, set()) - set(doc)
    if name not in shapes:
        print(f"FAIL  deploy/consul/{name}: not listed in check.sh (add its expected shape)")
        failed = True
    elif missing:
        print(f"FAIL  deploy/consul/{name}: missing {sorted(missing)}")
        failed = True
    else:
        print(f"ok    deploy/consul/{name}")
if "vault" not in str(hcl2.load(open(here / "agent-connect-vault-ca.hcl"))["connect"]):
    print("FAIL  agent-connect-vault-ca.hcl does not select the vault provider"); failed = True
print("\ndeploy/consul: " + ("CHECKS FAILED" if failed else "all checks passed"))
sys.exit(1 if failed else 0)
PY
