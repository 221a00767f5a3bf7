# One command runs the demo, one runs the tests; both set everything up from scratch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export LANGGRAPH_CLI_NO_ANALYTICS := 1

.PHONY: help demo test test-fast lint typecheck bench train eval studio browser-deps db-stop clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "airlock needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

browser-deps: ## Install Debian's Chromium for the browser tests (needs root or sudo)
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

demo: $(STAMP) ## Run the Gradio demo on http://127.0.0.1:7860 (DOMAIN=retail: the store; PORT=7861)
	$(if $(DOMAIN),AIRLOCK_DOMAIN=$(DOMAIN) )$(BIN)/airlock demo --port $(or $(PORT),7860)

test: $(STAMP) browser-deps ## Run every test (Postgres: DATABASE_URL, else embedded)
	$(BIN)/python -m pytest -q --durations=30

test-fast: $(STAMP) ## Run the tests without browser and langgraph-dev tests
	$(BIN)/python -m pytest -q -m "not browser and not studio"

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy graph nodes tools ui evals

bench: $(STAMP) ## Guard-pipeline and guarded-turn latency benchmarks
	$(BIN)/airlock bench

train: $(STAMP) ## Rebuild the classifier artefacts bit-for-bit (needs ../shared/data)
	$(BIN)/python -m evals.train_classifiers
	$(BIN)/python -m evals.train_encoder

eval: $(STAMP) ## Quality reports (classifiers, PII)
	$(BIN)/airlock eval

studio: $(STAMP) ## LangGraph Studio / `langgraph dev` (PORT=2024)
	$(BIN)/langgraph dev --no-browser --port $${PORT:-2024}

db-stop: ## Stop the embedded Postgres
	$(BIN)/airlock db stop

clean: ## Remove the virtual environment (keeps .data)
	rm -rf $(VENV)
