# Sourced by scripts/demo and scripts/test: make .venv (if missing) and install into it.
# usage: ensure_venv EXTRAS   (e.g. "" or "test,loadtest")
ensure_venv() {
    local extras=$1 python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "hbfork needs Python >= 3.11 (set PYTHON=...); found: $("$python" --version 2>&1)" >&2
        exit 2
    fi
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    local target="."
    [ -n "$extras" ] && target=".[$extras]"
    # Reinstall only when pyproject.toml changed since the last install.
    local stamp=".venv/.hbfork-installed-$extras"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
        touch "$stamp"
    fi
}

# Run `python -m MODULE ARGS...` (a module of loadtest.bench) from .venv, made with EXTRAS when
# needed; the working directory stays the caller's, so relative paths in ARGS still work.
# `-P`: the working directory is not put on sys.path, so another checkout's hbfork/ or
# loadtest/ there is never what runs.   usage: bench_module EXTRAS MODULE ARGS...
bench_module() {
    local extras=$1 module=$2 root
    shift 2
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    (cd "$root" && ensure_venv "$extras") || exit $?
    exec "$root/.venv/bin/python" -P -m "$module" "$@"
}
