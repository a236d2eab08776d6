#!/bin/sh
# The yagna service of the compose `golem` profile (its entrypoint).
#
# Runs `yagna service run` and, once yagna answers, makes sure the bot's requestor app key
# exists (`yagna app-key create` gives back the existing key of that name) and, once yagna's
# REST API accepts it, writes it to $YAGNA_APPKEY_FILE, in the volume only yagna and the bot
# mount. The bot reads it through
# YAGNA_APPKEY_FILE: the key is in no compose file, no environment and no log line.
#
# GSB_URL is a unix socket in that same volume: yagna's bus, which the bot's `gftp` uses,
# is not on any network. umask 0007: the socket and the key file belong to yagna and the
# group both containers share (gid 10000), nobody else.
#
# Settings (environment): YAGNA_APPKEY_FILE (required), YAGNA_APPKEY_NAME (classifier-bot),
# YAGNA_START_TIMEOUT_S (120), plus yagna's own (YAGNA_DATADIR, YAGNA_API_URL, GSB_URL).
set -eu

: "${YAGNA_APPKEY_FILE:?set YAGNA_APPKEY_FILE to where the bot reads the app key}"
: "${YAGNA_APPKEY_NAME:=classifier-bot}"
: "${YAGNA_START_TIMEOUT_S:=120}"
YAGNA=${YAGNA:-yagna}

umask 0007
mkdir -p "$(dirname "$YAGNA_APPKEY_FILE")"

"$YAGNA" service run &
yagna_pid=$!

stop() {
    kill -TERM "$yagna_pid" 2>/dev/null || true
    wait "$yagna_pid" || true
    exit 0
}
trap stop TERM INT

waited=0
# Wait (one second at a time, YAGNA_START_TIMEOUT_S in all) until "$@" succeeds.
wait_for() {
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$yagna_pid" 2>/dev/null; then
            echo "yagna-init: yagna exited before it was ready" >&2
            wait "$yagna_pid" || exit $?
            exit 1
        fi
        if [ "$waited" -ge "$YAGNA_START_TIMEOUT_S" ]; then
            echo "yagna-init: yagna was not ready within ${YAGNA_START_TIMEOUT_S} s" >&2
            kill -TERM "$yagna_pid" 2>/dev/null || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# yagna's REST API answers this key (the bus comes up first, the API after it).
api_accepts_key() {
    YAGNA_INIT_KEY="$key" python3 -c '
import os, sys, urllib.request as r
url = sys.argv[1].replace("//0.0.0.0:", "//127.0.0.1:").rstrip("/") + "/me"
req = r.Request(url, headers={"Authorization": "Bearer " + os.environ["YAGNA_INIT_KEY"]})
sys.exit(r.urlopen(req, timeout=5).status != 200)' "${YAGNA_API_URL:-http://127.0.0.1:7465}"
}

wait_for "$YAGNA" id show
key=$("$YAGNA" app-key create "$YAGNA_APPKEY_NAME")
case "$key" in
    *[!0-9A-Za-z_-]* | "")
        echo "yagna-init: \`yagna app-key create\` did not print an app key" >&2
        kill -TERM "$yagna_pid" 2>/dev/null || true
        exit 1
        ;;
esac
wait_for api_accepts_key
tmp="$YAGNA_APPKEY_FILE.tmp.$$"
printf '%s\n' "$key" >"$tmp"
chmod 0640 "$tmp"
mv -f "$tmp" "$YAGNA_APPKEY_FILE"
echo "yagna-init: app key \"$YAGNA_APPKEY_NAME\" is in $YAGNA_APPKEY_FILE"

wait "$yagna_pid"
