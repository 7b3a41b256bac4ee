#!/usr/bin/env bash
# Checks the monitoring files without running Prometheus or Grafana:
#   1. promtool check rules   portcullis.rules.yml
#   2. promtool test rules    portcullis.rules.test.yml   (alerts fire, and stay silent, as meant)
#   3. promtool check config  prometheus.yml
#   4. the dashboard is valid JSON, and every PromQL expression in it parses
#   5. every portcullis_* metric named here is one Portcullis documents (no typos); names not
#      yet found in the Rust sources are listed as a warning
#
# Needs promtool (Debian/Ubuntu: `apt-get install prometheus`; it only provides the binary
# here, no server is started) and python3 with PyYAML. With INSTALL_TOOLS=1 and root, the
# script installs the Debian package itself.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$here"

if ! command -v promtool >/dev/null 2>&1; then
    if [[ "${INSTALL_TOOLS:-0}" == 1 && "$(id -u)" == 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
        # The package starts a server on install where systemd runs; this check needs none.
        command -v systemctl >/dev/null 2>&1 && systemctl stop prometheus >/dev/null 2>&1 || true
    else
        echo "promtool not found: apt-get install prometheus (or INSTALL_TOOLS=1 $0 as root)" >&2
        exit 1
    fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
step() { printf '\n== %s\n' "$*"; }

step "promtool check rules portcullis.rules.yml"
promtool check rules portcullis.rules.yml || failed=1

step "promtool test rules portcullis.rules.test.yml"
promtool test rules portcullis.rules.test.yml || failed=1

step "promtool check config prometheus.yml"
if ! promtool check config prometheus.yml >"$work/config.out" 2>&1; then
    cat "$work/config.out"
    if grep -q "consul_sd_configs not found" "$work/config.out"; then
        # Some distribution builds of promtool leave out Consul service discovery. Check the
        # rest of the file and say plainly that the consul_sd block was not checked.
        echo "note: this promtool has no Consul service discovery; checking the file without it" \
             "(the consul_sd_configs block is NOT validated here)"
        python3 - "$work/prometheus.yml" <<'EOF'
import sys, yaml
config = yaml.safe_load(open("prometheus.yml"))
for job in config["scrape_configs"]:
    if job.pop("consul_sd_configs", None) is not None:
        job["static_configs"] = [{"targets": ["127.0.0.1:9901"]}]
config["rule_files"] = ["portcullis.rules.yml"]
yaml.safe_dump(config, open(sys.argv[1], "w"), sort_keys=False)
EOF
        cp portcullis.rules.yml "$work/"
        promtool check config "$work/prometheus.yml" || failed=1
    else
        failed=1
    fi
else
    cat "$work/config.out"
fi

step "dashboard: JSON and PromQL"
if python3 -m json.tool portcullis-dashboard.json >/dev/null; then
    echo "portcullis-dashboard.json: valid JSON"
    # Turn each panel query into a recording rule so that promtool parses it. Grafana's own
    # variables are replaced by plain values first.
    python3 - "$work/dashboard-queries.yml" <<'EOF'
import json, sys, yaml
dash = json.load(open("portcullis-dashboard.json"))
subst = {"$__rate_interval": "5m", "$__range": "1h", "$service": ".*", "$instance": ".*",
         "$listener": ".*"}
rules = []
def walk(panels):
    for panel in panels:
        walk(panel.get("panels", []))
        for target in panel.get("targets", []):
            expr = target["expr"]
            for key in sorted(subst, key=len, reverse=True):
                expr = expr.replace(key, subst[key])
            if "$" in expr:
                sys.exit("unreplaced variable in panel %r: %s" % (panel["title"], expr))
            rules.append({"record": "dashboard:panel_%d_%s" % (panel["id"], target["refId"]), "expr": expr})
walk(dash["panels"])
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[1], "w"))
print("%d panel queries extracted" % len(rules))
EOF
    promtool check rules "$work/dashboard-queries.yml" || failed=1
else
    failed=1
fi

step "metric names"
# The names Portcullis exports (proxy and rotator), as documented in deploy/README.md.
known="portcullis_connections_accepted_total portcullis_connections_active
portcullis_connections_refused_total portcullis_would_reject_total
portcullis_handshake_failures_total portcullis_bytes_total
portcullis_upstream_connect_failures_total portcullis_mode portcullis_config_reloads_total
portcullis_ready portcullis_certificate_not_after_seconds
portcullis_certificate_not_before_seconds portcullis_certificate_seconds_to_expiry
portcullis_certificate_lifetime_used_ratio portcullis_certificate_last_renewal_timestamp_seconds
portcullis_certificate_reloads_total portcullis_certificate_refused_total
portcullis_source_request_seconds portcullis_vault_token_ttl_seconds
portcullis_vault_requests_total"
used="$(grep -ohE 'portcullis_[a-z_]+' portcullis.rules.yml portcullis-dashboard.json prometheus.yml \
        | sed -E 's/_(bucket|sum|count)$//' | grep -v '^portcullis_admin_port$' | sort -u)"
for name in $used; do
    if ! grep -qx "$name" <<<"$(tr ' ' '\n' <<<"$known")"; then
        echo "unknown metric name: $name" >&2
        failed=1
    fi
done
echo "$(wc -w <<<"$used") metric names used, all documented"
missing=""
for name in $known; do
    grep -rqs --include='*.rs' "\"$name\"" "$repo/proxy" "$repo/rotator" || missing="$missing $name"
done
if [[ -n "$missing" ]]; then
    echo "warning: not (yet) exported as a literal in proxy/ or rotator/:$missing"
fi

echo
if [[ "$failed" == 0 ]]; then
    echo "deploy/monitoring: all checks passed"
else
    echo "deploy/monitoring: CHECKS FAILED" >&2
fi
exit "$failed"
