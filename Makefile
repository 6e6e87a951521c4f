# Two commands set everything up on a fresh machine:
#   make run   - the whole stack locally (embedded Redis/Postgres when none is configured)
#   make test  - the test suite
# Both create .venv inside the repo on first use and reinstall when pyproject.toml changes.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run chat test bench demo-model lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel is what the project is built and measured on.
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m services.stack run

chat: $(STAMP)
	$(PY) -m services.stack chat

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo-model: $(STAMP)
	$(PY) -m services.inference_worker.demo_model.build

bench: $(STAMP)
	$(PY) -m bench.inference $(BENCH_ARGS)
