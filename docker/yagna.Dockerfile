# yagna (the Golem node) for the compose `golem` profile. Build context: the repository root.
# Unbuilt on the project's machines (no Docker engine); tests/bot/test_container.py checks it
# statically, hadolint lints it, and tests/golem_backend/test_yagna_init.py runs its
# entrypoint against the real yagna.
#
# Base: the exact Python release and Debian suite (tag) and the image index digest, so a
# rebuild gets the same base until someone bumps both on purpose.
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY docker/yagna-requirements.txt /tmp/yagna-requirements.txt
# golem-node is pinned with its sha256; user 10002 in the group it shares with the bot
# (10000): the GSB socket and the app key file in /run/yagna are theirs only.
RUN pip install --require-hashes --no-deps -r /tmp/yagna-requirements.txt \
    && groupadd --gid 10000 golem-bus \
    && useradd --create-home --uid 10002 --gid 10000 golem \
    && install -d -o 10002 -g 10000 -m 2770 /run/yagna \
    && install -d -o 10002 -g 10000 -m 0700 /home/golem/.local/share/yagna
COPY --chmod=0755 docker/yagna-init.sh /usr/local/bin/yagna-init

ENV YAGNA_DATADIR=/home/golem/.local/share/yagna \
    YAGNA_API_URL=http://0.0.0.0:7465 \
    GSB_URL=unix:/run/yagna/gsb.sock \
    YAGNA_APPKEY_FILE=/run/yagna/appkey
USER 10002:10000
WORKDIR /home/golem
VOLUME ["/home/golem/.local/share/yagna", "/run/yagna"]
EXPOSE 7465
# Healthy once yagna answers on its bus and the app key has been written for the bot.
HEALTHCHECK --interval=15s --timeout=10s --start-period=120s --retries=3 \
    CMD ["/bin/sh", "-c", "test -s \"$YAGNA_APPKEY_FILE\" && yagna id show > /dev/null"]
CMD ["yagna-init"]
