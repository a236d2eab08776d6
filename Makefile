# Quick start:   make run    (set up and start the bot; needs DISCORD_TOKEN in .env)
#                make test   (set up and run the linters and the whole test-suite)
#                make demo   (try the bot without Discord: a conversation with the simulator)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
# The one lock of the classifier's runtime libraries (numpy, scikit-learn, onnxruntime, ...):
# setup, the bot image and the provider VM image all install with it. `make lock` remakes it.
LOCK   := provider/constraints.txt

.PHONY: setup run demo test lint lock bench bench-heads bench-classifier bench-engines bench-network bench-local bench-golem bench-golem-elastic bench-bot bench-burst bench-soak bench-fewshot image clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $@

setup: $(STAMP)

run: setup
	@test -f .env || { cp .env.example .env; echo "created .env from .env.example: put your DISCORD_TOKEN in it"; }
	$(BIN)/python -m bot

# Try the bot without Discord: the real bot against the project's Discord simulator, a short
# conversation printed as a transcript (demo/run.py; the first run trains the default model).
demo: setup
	$(BIN)/python -m demo.run

# Compile provider/constraints.in (pyproject.toml's specifiers) into the lock for the images'
# platform (CPython 3.11, x86-64 Linux). Existing pins are kept; `make lock LOCK_FLAGS=--upgrade`
# moves every library to the newest version pyproject.toml admits. Then rebuild the VM image
# (`make image`) and set its new GOLEM_IMAGE_HASH: the bot and the providers must match.
LOCK_FLAGS ?=
lock: setup
	$(BIN)/python -m pip install --quiet 'uv>=0.9,<1'
	$(BIN)/uv pip compile provider/constraints.in --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock' \
		$(LOCK_FLAGS) -o $(LOCK)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup
	PYTHON=$(BIN)/python bash .ci/yagna.sh install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

bench: bench-classifier bench-engines bench-network bench-local bench-golem bench-bot bench-burst bench-heads

bench-classifier: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.bench_classifier

bench-engines: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.bench_engines

bench-network: setup
	$(BIN)/python -m bench.bench_network

bench-local: setup
	$(BIN)/python -m bench.bench_local_backend

bench-golem: setup
	$(BIN)/python -m bench.bench_golem_harness

bench-golem-elastic: setup
	$(BIN)/python -m bench.bench_golem_elastic

bench-bot: setup
	$(BIN)/python -m bench.bench_bot

# few-shot open-set benchmark (not part of `make bench`: it needs the photo sets that
# tools/fetch_fewshot_sets.py rebuilds outside the repository, see docs/classifier.md)
bench-fewshot: setup
	$(BIN)/python -m bench.bench_fewshot

# Issue 20's bursts (100 from one server, 60 over three, 1000 at once) through the door,
# with the previous fixed limit measured in the same run (BURST_ARGS, e.g. --runs 5)
BURST_ARGS ?=
bench-burst: setup
	$(BIN)/python -m bench.bench_burst $(BURST_ARGS)

# The long soak (issue 20; not part of `make bench`): 2 hours and 10 minutes of mixed
# traffic against `python -m bot`, a burst of 100 members at once every 3 minutes; the
# bot's RSS must grow <= 5% over the last hour. SOAK_ARGS replaces the options (e.g.
# SOAK_ARGS= for the former 30-minute run without bursts). Run it on a quiet machine.
SOAK_ARGS ?= --minutes 130 --burst-every 180 --burst-size 100 --keep
bench-soak: setup
	$(BIN)/python -m bench.bench_soak $(SOAK_ARGS)

bench-heads: setup
	$(BIN)/python -m bench.bench_head_retrain
	$(BIN)/python -m bench.bench_many_heads
	$(BIN)/python -m bench.bench_golem_heads

# Build the provider VM image from the lock and publish it to Golem's image registry by its
# hash, anonymously (`--push --nologin`, as Golem's documentation gives it; a plain `--push`
# wants a registry account and a user/repository:tag name). Needs a Docker engine; installs
# gvmkit-build into the venv. It prints "image hash: sha3:<56 hex digits>": put that hash in
# .env as GOLEM_IMAGE_HASH (docs/golem.md).
IMAGE ?= golem-image-classifier:latest
GVMKIT_BUILD ?= gvmkit-build==0.3.19
image: setup
	$(BIN)/python -m pip install --quiet '$(GVMKIT_BUILD)'
	docker build -f provider/Dockerfile -t $(IMAGE) .
	$(BIN)/gvmkit-build $(IMAGE) --push --nologin
	@echo "put the image hash printed above in .env: GOLEM_IMAGE_HASH=<56 hex digits>"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache bench/out
