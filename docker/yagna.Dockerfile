# yagna (the Golem node) for BACKEND=golem, from the golem-node package (.ci/yagna.sh pins
# the same version). Unbuilt here; tests/bot/test_container.py checks it statically.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install "golem-node==0.17.6" && useradd --create-home --uid 10002 golem
USER golem
WORKDIR /home/golem
VOLUME ["/home/golem/.local/share/yagna"]
EXPOSE 7465
CMD ["yagna", "service", "run", "--api-url", "http://0.0.0.0:7465"]
