# Quick start:   make run    (set up and start the bot; needs DISCORD_TOKEN in .env)
#                make test   (set up and run the linters and the whole test-suite)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: setup run test lint bench bench-heads bench-classifier bench-engines bench-network bench-local bench-golem bench-golem-elastic bench-bot bench-soak bench-fewshot image clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP)

run: setup
	@test -f .env || { cp .env.example .env; echo "created .env from .env.example: put your DISCORD_TOKEN in it"; }
	$(BIN)/python -m bot

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup
	PYTHON=$(BIN)/python bash .ci/yagna.sh install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

bench: bench-classifier bench-engines bench-network bench-local bench-golem bench-bot bench-heads

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

# 30 minutes of mixed traffic against the real bot (not part of `make bench`)
bench-soak: setup
	$(BIN)/python -m bench.bench_soak

bench-heads: setup
	$(BIN)/python -m bench.bench_head_retrain
	$(BIN)/python -m bench.bench_many_heads
	$(BIN)/python -m bench.bench_golem_heads

# Build the provider VM image and push it to the Golem image repository (needs a Docker
# engine and `pip install gvmkit-build`); put the printed hash in GOLEM_IMAGE_HASH.
IMAGE ?= golem-image-classifier:latest
image:
	docker build -f provider/Dockerfile -t $(IMAGE) .
	gvmkit-build $(IMAGE) --push

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache bench/out
