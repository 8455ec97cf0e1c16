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
