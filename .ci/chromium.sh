#!/usr/bin/env bash
# Install Debian's Chromium (the browser the dashboard's browser tests drive through
# Playwright, tests/browser.py) when it is missing. Playwright's own browser download
# cannot be used here: only Debian's package is reachable.
#   bash .ci/chromium.sh        (as root; prints the browser's path)
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [[ ! -x "$CHROMIUM" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "Chromium is not installed ($CHROMIUM missing) and we are not root:" \
            "apt-get install chromium" >&2
        exit 1
    fi
    echo "installing chromium"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
"$CHROMIUM" --version
