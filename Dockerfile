# The bot's image. Two targets:
#   docker build -t classifier-bot .                  the bot with the local backend (default)
#   docker build --target golem --build-arg YAGNA_REQUESTOR_SHA256=<sha256> -t classifier-bot .
#                                                      the same plus gftp, for BACKEND=golem
#                                                      (the archive's sha256: docs/golem.md)
# Run:   docker compose up -d   (compose.yaml: the bot, plus optional postgres and yagna)
# Unbuilt on the project's machines (no Docker engine there); tests/bot/test_container.py
# checks this file statically and hadolint lints it.
#
# Base: the exact Python release and Debian suite (tag) and the image index digest, so a
# rebuild gets the same base until someone bumps both on purpose (the same base as the
# Golem VM image, provider/Dockerfile).

# --- build: install the package and its dependencies into a venv ------------------------
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY provider ./provider
COPY golem_backend ./golem_backend
COPY bot ./bot
# The classifier's libraries as locked (provider/constraints.txt): the versions the Golem VM
# image has, which the version handshake checks.
RUN pip install -c provider/constraints.txt .

# --- gftp: yapapi runs `gftp server` for every file sent to or from a provider ------------
# From yagna's release archive (the requestor archive holds yagna and gftp), version pinned,
# checked against YAGNA_REQUESTOR_SHA256 (the release publishes no checksum file: take the
# sha256 of the archive you reviewed, see docs/golem.md). A missing argument stops the build.
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS gftp
ARG YAGNA_VERSION=0.17.6
ARG YAGNA_REQUESTOR_SHA256=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /tmp/yagna
RUN if ! printf '%s' "$YAGNA_REQUESTOR_SHA256" | grep -Eqx '[0-9a-f]{64}'; then \
        echo "YAGNA_REQUESTOR_SHA256 must be the sha256 (64 hex digits) of golem-requestor-linux-v${YAGNA_VERSION}.tar.gz: docker build --build-arg YAGNA_REQUESTOR_SHA256=... (docs/golem.md)" >&2; \
        exit 1; \
    fi \
    && python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], 'requestor.tar.gz')" \
        "https://github.com/golemfactory/yagna/releases/download/v${YAGNA_VERSION}/golem-requestor-linux-v${YAGNA_VERSION}.tar.gz" \
    && echo "${YAGNA_REQUESTOR_SHA256}  requestor.tar.gz" | sha256sum --check --strict - \
    && tar -xzf requestor.tar.gz --strip-components=1 "golem-requestor-linux-v${YAGNA_VERSION}/gftp" \
    && install -m 0755 gftp /usr/local/bin/gftp \
    && gftp --version

# --- runtime: the venv only, a non-root user, the data in a volume -----------------------
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS runtime
# User 10001 in the group it shares with the yagna container (10000): /run/yagna holds
# yagna's bus socket and the app key file (compose `golem` profile).
RUN groupadd --gid 10000 golem-bus \
    && useradd --create-home --uid 10001 --gid 10000 bot \
    && install -d -o 10001 -g 10000 -m 0750 /data \
    && install -d -o 10002 -g 10000 -m 2770 /run/yagna
COPY --from=build /opt/venv /opt/venv
# HTTP_HOST: every interface of the container's own network; compose publishes the port on
# the host's loopback only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/data \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080
USER 10001:10000
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status != 200)"]
CMD ["classifier-bot"]

# --- golem: the runtime plus gftp (BACKEND=golem; the compose `golem` profile builds it) --
FROM runtime AS golem
COPY --from=gftp /usr/local/bin/gftp /usr/local/bin/gftp

# --- local (the default target, last): the runtime alone; BuildKit skips the gftp stage ---
FROM runtime AS local
