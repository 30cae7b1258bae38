#!/usr/bin/env bash
# One entry point that does all set-up on a fresh clone, then runs a job.
#   ./dev.sh compare [glep compare options]   the main job (embedded default without options)
#   ./dev.sh test    [pytest options]         the whole test suite, MPI tests included
#   ./dev.sh setup                            only create .venv and install
set -euo pipefail
caller=$PWD  # relative paths given to ./dev.sh compare (--config, --output) are the caller's
cd "$(dirname "$0")"
repo=$PWD

find_python() {
    local c
    for c in python3.12 python3.13 python3.14; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
            command -v "$c"; return 0
        fi
    done
    for c in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
        if [ -x "$c" ] && "$c" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
            echo "$c"; return 0
        fi
    done
    if command -v python3 >/dev/null 2>&1 && python3 -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
        command -v python3; return 0
    fi
    return 1
}

setup() {
    local stamp=.venv/.glep-installed want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if [ ! -x .venv/bin/python ]; then
        local py
        if ! py=$(find_python); then
            echo "dev.sh: error: glep needs Python >= 3.12 (dolfinx-solver-real has no wheel for older" >&2
            echo "Pythons). None was found on PATH nor under \$PYENV_ROOT/versions (${PYENV_ROOT:-$HOME/.pyenv})." >&2
            echo "Install Python 3.12 (e.g. 'pyenv install 3.12') and run this command again." >&2
            exit 1
        fi
        echo "dev.sh: creating .venv with $py" >&2
        "$py" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[test]"
    echo "$want" > "$stamp"
}

run_pytest() {  # pytest exits 5 when it collected no test: that is not a failure of the suite
    local rc=0
    "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then rc=0; fi
    return "$rc"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) setup ;;
    compare) setup; cd "$caller"; exec "$repo/.venv/bin/glep" compare "$@" ;;
    test)
        setup
        export OMP_NUM_THREADS=1
        run_pytest .venv/bin/python -m pytest -q --ignore=tests/mpi "$@"
        echo "dev.sh: MPI tests (mpirun -n 2)" >&2
        run_pytest .venv/bin/mpirun -n 2 .venv/bin/python -m pytest -q -p no:cacheprovider tests/mpi
        ;;
    *) echo "usage: ./dev.sh {compare|test|setup} [options]" >&2; exit 2 ;;
esac
