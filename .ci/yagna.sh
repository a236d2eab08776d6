#!/usr/bin/env bash
# yagna (the Golem node) for the Golem backend's tests.
#
#   bash .ci/yagna.sh install   # pip-install golem-node (provides `yagna`) when it is missing
#   bash .ci/yagna.sh check     # print the yagna version, fail when it is not installed
#
# The tests start and stop yagna themselves (tests/golem_backend/test_golem_yagna.py), on
# loopback only, with a temporary data dir, and fail in CI (CI=true) when yagna is missing.
set -euo pipefail

GOLEM_NODE_VERSION="0.17.6"
PYTHON="${PYTHON:-python}"

yagna_bin() {
    command -v yagna 2>/dev/null && return 0
    local venv_bin
    venv_bin="$("$PYTHON" -c 'import sys, os; print(os.path.dirname(sys.executable))')/yagna"
    [[ -x "$venv_bin" ]] && echo "$venv_bin" && return 0
    return 1
}

case "${1:-install}" in
    install)
        if bin="$(yagna_bin)"; then
            echo "yagna already installed: $("$bin" --version)"
        else
            echo "installing golem-node==${GOLEM_NODE_VERSION} (provides yagna, ~40 MB download)"
            "$PYTHON" -m pip install --quiet "golem-node==${GOLEM_NODE_VERSION}"
            bin="$(yagna_bin)"
            echo "installed: $("$bin" --version)"
        fi
        ;;
    check)
        bin="$(yagna_bin)" || { echo "yagna is not installed: run bash .ci/yagna.sh install" >&2; exit 1; }
        "$bin" --version
        ;;
    *)
        echo "usage: $0 [install|check]" >&2
        exit 64
        ;;
esac
