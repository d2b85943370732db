# Sourced by the other scripts: create or reuse .venv from requirements.txt, then activate it.
# Needs Python >= 3.12 (Django 6). Set KEYWARD_PYTHON to choose the interpreter.

find_python() {
    local candidate
    for candidate in "${KEYWARD_PYTHON:-}" python3.13 python3.12 python3; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    # pyenv installs that are not the global version are not on PATH.
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
        if [ -x "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

ensure_venv() {
    local root stamp want python
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    stamp="$root/.venv/.requirements.sha256"
    want=$(sha256sum "$root/requirements.txt" | cut -d' ' -f1)
    if [ ! -x "$root/.venv/bin/python" ]; then
        python=$(find_python) || { echo "keyward needs Python >= 3.12; set KEYWARD_PYTHON" >&2; return 1; }
        echo "Creating .venv with $python" >&2
        "$python" -m venv "$root/.venv"
    fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "Installing requirements into .venv" >&2
        "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements.txt" \
            || return 1
        echo "$want" > "$stamp"
    fi
    # shellcheck disable=SC1091
    source "$root/.venv/bin/activate"
    cd "$root" || return 1
}
