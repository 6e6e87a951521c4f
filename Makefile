# Two commands set everything up on a fresh machine:
#   make run   - the whole stack locally (embedded Redis/Postgres when none is configured)
#   make test  - the test suite (embedded Redis/Postgres when the machine runs none)
# Both create .venv inside the repo on first use and reinstall when pyproject.toml changes.
# Also: make test-fast (no server, no model build: the edit loop), make lint (ruff, mypy),
# make audit (asks PyPI).
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run chat test test-fast lint audit bench demo-model system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel is what the project is built and measured on.
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	@$(PY) -m services.stack run

chat: $(STAMP)
	$(PY) -m services.stack chat

test: $(STAMP) system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# The tests that start no server and no service process and build no model (tests/tiers.py).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not heavy" $(PYTEST_ARGS)

# Lint, format and types (configured in pyproject.toml); `ruff format .` rewrites what --check refuses.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Known vulnerabilities of the installed distributions; asks the package index, so not in make test.
audit: $(STAMP)
	$(PY) -m tools.audit

# Debian packages some tests drive: Chromium (admin page) and Prometheus (promtool, a real scrape).
# Installed when missing and running as root; otherwise (or offline) say so: those tests skip.
SYSTEM_DEPS := chromium prometheus
system-deps:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	 command -v promtool >/dev/null || missing="$$missing prometheus"; \
	 if [ -n "$$missing" ]; then \
	   if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	     (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) \
	       || echo "note: could not install$$missing (offline?): the tests that drive them will skip"; \
	   else echo "note: install$$missing (Debian packages) to run every test"; fi; fi

demo-model: $(STAMP)
	$(PY) -m services.inference_worker.demo_model.build

bench: $(STAMP)
	$(PY) -m bench.inference $(BENCH_ARGS)
