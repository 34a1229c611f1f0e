# Two entry points, each self-contained on a fresh machine with Python 3.11:
#   make run   creates .venv, installs the bot, and starts it on the embedded defaults
#   make test  creates .venv, installs the bot with its test tools, and runs every check
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run chat test test-fast fuzz lint typecheck kb nlu-eval bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# make run ARGS=--telegram-polling: Telegram by long polling, for a machine without a public URL.
ARGS ?=
run: $(STAMP)
	$(BIN)/btp-bot serve --demo $(ARGS)

# Talk to the bot in this terminal, on the demo world.
chat: $(STAMP)
	$(BIN)/btp-bot chat --demo

# The same checks run by .pre-commit-config.yaml (`.venv/bin/pre-commit install` to have them
# before every commit).
lint: $(STAMP) typecheck
	$(BIN)/ruff check bot webhook_server.py tests benchmarks
	$(BIN)/ruff format --check bot webhook_server.py tests benchmarks
	$(BIN)/lint-imports

# mypy strict on the package; tests and benchmarks with the relaxations in pyproject.toml.
typecheck: $(STAMP)
	$(BIN)/mypy bot webhook_server.py tests benchmarks

kb: $(STAMP)
	$(BIN)/btp-bot kb check

nlu-eval: $(STAMP)
	$(BIN)/btp-bot nlu eval tests/data/nlu_dev.jsonl

# The browser tests drive Debian's Chromium (browser downloads are not possible here). On a
# shared machine another program may hold apt's lock: wait for it rather than fail.
APT_WAIT := -o DPkg::Lock::Timeout=600
browser:
	@{ command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "wenquanyi"; } || { \
	  echo "installing Debian's chromium and a CJK font for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get $(APT_WAIT) update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get $(APT_WAIT) install -y -qq \
	    chromium fonts-wqy-microhei >/dev/null; }

# Tiers (markers set in tests/conftest.py): unit, conversation, http, browser, postgres, slow.
# Tests are independent of each other (own temp dirs, ports chosen by the OS, one PostgreSQL
# database per xdist worker), so they run on every core.
XDIST ?= -n auto
FAST := not browser and not postgres and not slow

test: $(STAMP) lint kb browser
	$(BIN)/python -m pytest -q -rs $(XDIST)

# Everything but the browser, PostgreSQL and slow tiers: the loop to run while working.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m "$(FAST)"

# The property tests randomized, with many more examples than CI's derandomized run; what they
# find is kept in .hypothesis/ and replayed first by every later run.
FUZZ_PROFILE ?= fuzz
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=$(FUZZ_PROFILE) $(BIN)/python -m pytest -q $(XDIST) \
	  tests/test_properties.py tests/test_attacks_mask.py tests/test_api_properties.py

bench: $(STAMP)
	$(BIN)/python benchmarks/nlu_latency.py
	$(BIN)/python benchmarks/engine_throughput.py
	$(BIN)/python benchmarks/turn_cpu.py
	$(BIN)/python benchmarks/http_throughput.py
	$(BIN)/python benchmarks/memory.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
