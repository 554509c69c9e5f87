# One entry point for newcomers and CI.  Every target sets up the venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
OUT ?= out

.PHONY: setup run test test-slow lint clean

# torch is installed first, pinned to the CPU build this machine carries;
# the package's own torch>=2.6 range is then already satisfied, so pip never
# reaches for a multi-GB CUDA wheel.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,bench]' --config-settings editable_mode=compat
	touch $@

setup: $(VENV)/.installed

# The main job: every tiny zoo model x every strategy, parity-checked, scored,
# gated by model_zoo/expectations.json; scoreboard in $(OUT)/zoo/.
run: setup
	$(BIN)/modelexport zoo run --tier tiny --out $(OUT)/zoo

test: setup
	$(BIN)/ruff check .
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(OUT) .pytest_cache
