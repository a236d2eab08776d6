# The bot's image. Build: docker build -t classifier-bot .
# Run:   docker compose up -d   (compose.yaml: the bot, plus optional postgres and yagna)
# Unbuilt on the project's machines (no Docker engine there); tests/bot/test_container.py
# checks this file statically.

# --- build: install the package and its dependencies into a venv ------------------------
FROM python:3.11-slim AS build
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

# --- runtime: the venv only, a non-root user, the data in a volume ------------------------
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 bot && mkdir -p /data && chown bot:bot /data
COPY --from=build /opt/venv /opt/venv
# HTTP_HOST: every interface of the container's own network; compose publishes the port on
# the host's loopback only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/data \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080
USER bot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status != 200)"]
CMD ["classifier-bot"]
