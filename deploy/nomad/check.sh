#!/usr/bin/env bash
# Checks what can be checked here without Nomad or Consul (neither can be installed on the
# build machine):
#   1. every .hcl file in deploy/nomad parses as HCL2 (python-hcl2; syntax only: Nomad's own
#      job validation, `nomad job validate`, is NOT run);
#   2. the Portcullis configuration embedded in each Nomad job (the heredoc between
#      `<<-PORTCULLIS_TOML` and `PORTCULLIS_TOML`) is rendered by hand, the way Nomad would:
#      job variables (${var.x}, ${jsonencode(var.x)}) from their defaults, and the template
#      functions the jobs use ({{ env "..." }}, nomadVar items) from placeholder values,
#      once per mode (permissive and strict);
#   3. each rendered file is parsed as TOML and given to `portcullis check --config FILE`.
#
# Environment: PORTCULLIS_BIN (default: target/debug/portcullis, then portcullis on PATH);
# HCL_VENV (default: a venv under ${XDG_CACHE_HOME:-~/.cache}; python-hcl2 is pip-installed
# into it on first use). KEEP=1 keeps the rendered files and prints where they are;
# RENDER_DIR=DIR renders into DIR and stops there (smoke-vault.sh uses it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if [[ -n "${RENDER_DIR:-}" ]]; then
    # Used by smoke-vault.sh: render into RENDER_DIR, keep everything, skip `portcullis check`.
    mkdir -p "$RENDER_DIR"; work="$(cd "$RENDER_DIR" && pwd)"
elif [[ "${KEEP:-0}" == 1 ]]; then
    work="$(mktemp -d)"; trap 'echo "rendered files kept in $work"' EXIT
else
    work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
fi
failed=0
step() { printf '\n== %s\n' "$*"; }

venv="${HCL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-deploy-venv}"
if ! "$venv/bin/python" -c 'import hcl2' >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'python-hcl2==8.1.4'
fi
py="$venv/bin/python"

step "HCL2 syntax"
for file in "$here"/*.hcl; do
    [[ -e "$file" ]] || continue
    if "$py" -c 'import hcl2, sys; hcl2.load(open(sys.argv[1]))' "$file" 2>"$work/hcl.err"; then
        echo "ok    ${file#"$repo"/}"
    else
        echo "FAIL  ${file#"$repo"/}"; sed 's/^/      /' "$work/hcl.err"; failed=1
    fi
done

step "render the embedded Portcullis configuration"
mkdir -p "$work/alloc/secrets" "$work/alloc/local" "$work/alloc/alloc"
printf 'placeholder.jwt.value' >"$work/alloc/secrets/vault.jwt"
printf 'placeholder-admin-token' >"$work/alloc/secrets/admin-token"
chmod 0600 "$work/alloc/secrets/"*
"$py" - "$here" "$work" <<'EOF' || failed=1
import json, pathlib, re, sys, textwrap, tomllib
import hcl2

here, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
alloc = work / "alloc"
# What Nomad would put in the task's environment (docker paths are mapped to these dirs).
task_env = {
    "NOMAD_SECRETS_DIR": str(alloc / "secrets"),
    "NOMAD_TASK_DIR": str(alloc / "local"),
    "NOMAD_ALLOC_DIR": str(alloc / "alloc"),
    "NOMAD_ALLOC_ID": "00000000-0000-0000-0000-000000000000",
    "NOMAD_JOB_ID": "payments",
    "CONSUL_HTTP_ADDR": "unix:///alloc/tmp/consul_http.sock",
}

def strip_quotes(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [strip_quotes(v) for v in value]
    return value

def defaults(path):
    parsed = hcl2.load(open(path))
    out = {}
    for block in parsed.get("variable", []):
        for name, body in block.items():
            if isinstance(body, dict) and "default" in body:
                out[strip_quotes(name)] = strip_quotes(body["default"])
    return out

def hcl_interpolate(text, variables):
    def repl(match):
        expr = match.group(1).strip()
        m = re.fullmatch(r"jsonencode\(var\.(\w+)\)", expr)
        if m:
            return json.dumps(variables[m.group(1)])
        m = re.fullmatch(r"var\.(\w+)", expr)
        if m:
            return str(variables[m.group(1)])
        raise SystemExit(f"unsupported HCL interpolation ${{{expr}}}")
    return re.sub(r"\$\{([^}]*)\}", repl, text)

def go_template(text, items):
    """The subset of consul-template the jobs use: env, nomadVar items, with/end, trim markers."""
    def action(body):
        if m := re.fullmatch(r'env\s+"(\w+)"', body):
            if m.group(1) not in task_env:
                raise SystemExit(f"no placeholder for env {m.group(1)}")
            return task_env[m.group(1)]
        if re.fullmatch(r'with\s+nomadVar\s+"[^"]+"', body) or body == "end":
            return ""
        if m := re.fullmatch(r"\.(\w+)", body):
            return items[m.group(1)]
        raise SystemExit(f"unsupported template action {{{{ {body} }}}}")
    pattern = re.compile(r"(\s*)\{\{(-?)\s*(.*?)\s*(-?)\}\}(\s*)", re.S)
    def repl(m):
        left = "" if m.group(2) else m.group(1)
        right = "" if m.group(4) else m.group(5)
        return left + action(m.group(3)) + right
    return pattern.sub(repl, text)

heredoc = re.compile(r"<<-PORTCULLIS_TOML\n(.*?)\n\s*PORTCULLIS_TOML\n", re.S)
count = 0
for job in sorted(here.glob("*.nomad.hcl")):
    text = job.read_text()
    blocks = heredoc.findall(text)
    if not blocks:
        continue
    variables = defaults(job)
    for index, block in enumerate(blocks):
        body = textwrap.dedent(block)
        for mode in ("permissive", "strict"):
            rendered = go_template(hcl_interpolate(body, variables),
                                   {"mode": mode, "admin_token": "placeholder-admin-token"})
            if "{{" in rendered or "${" in rendered:
                raise SystemExit(f"{job.name}: unrendered expression left")
            tomllib.loads(rendered)  # raises on a TOML syntax error
            out = work / f"{job.name.removesuffix('.nomad.hcl')}.{index}.{mode}.toml"
            out.write_text(rendered)
            print(f"rendered {job.name} -> {out.name}")
            count += 1
if count == 0:
    raise SystemExit("no PORTCULLIS_TOML heredoc found")
EOF

if [[ -n "${RENDER_DIR:-}" ]]; then
    exit "$failed"
fi

step "portcullis check"
bin="${PORTCULLIS_BIN:-}"
if [[ -z "$bin" ]]; then
    if [[ -x "$repo/target/debug/portcullis" ]]; then bin="$repo/target/debug/portcullis"
    elif command -v portcullis >/dev/null 2>&1; then bin="$(command -v portcullis)"; fi
fi
if [[ -z "$bin" ]] || ! "$bin" --help 2>/dev/null | grep -qw check; then
    echo "SKIPPED: no portcullis binary with a 'check' command (cargo build -p portcullis-proxy)"
    echo "         the rendered files were only parsed as TOML, not checked against Portcullis's keys"
    if [[ "${REQUIRE_PORTCULLIS:-0}" == 1 ]]; then failed=1; fi
else
    for config in "$work"/*.toml; do
        [[ -e "$config" ]] || continue
        # A config marked `# provisional: consul source` needs a source Portcullis does not
        # have yet: its refusal is expected, and reported as such.
        provisional=0
        grep -q '^# provisional: consul source' "$config" && provisional=1
        if "$bin" check --config "$config" >"$work/check.out" 2>&1; then
            echo "ok    $(basename "$config")"
            [[ "$provisional" == 1 ]] && echo "      (provisional config accepted: drop the PROVISIONAL marks)"
        elif [[ "$provisional" == 1 ]]; then
            echo "EXPECTED FAIL  $(basename "$config") (no consul source yet):"
            sed 's/^/      /' "$work/check.out"
        else
            echo "FAIL  $(basename "$config")"; sed 's/^/      /' "$work/check.out"; failed=1
        fi
    done
fi

echo
if [[ "$failed" == 0 ]]; then echo "deploy/nomad: all checks passed"; else echo "deploy/nomad: CHECKS FAILED" >&2; fi
exit "$failed"
