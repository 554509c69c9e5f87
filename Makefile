# One entry point for newcomers and CI.  Every target sets up the venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
OUT ?= out

.PHONY: setup run run-wide run-wide-auto run-idioms fit-selector test test-slow test-all test-load lint clean

# torch is installed first, pinned to the CPU build this machine carries;
# the package's own torch>=2.6 range is then already satisfied, so pip never
# reaches for a multi-GB CUDA wheel.
# The other packages are held at the versions the zoo expectations were
# measured with (constraints.txt).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench,scale]' --config-settings editable_mode=compat
	touch $@

setup: $(VENV)/.installed

# The main job: every tiny zoo model, under both weight modes (native and
# seeded), x every strategy: each file run at two shapes, scored, gated by
# model_zoo/expectations.json; scoreboard in $(OUT)/zoo/.
run: setup
	$(BIN)/modelexport zoo run --tier tiny --out $(OUT)/zoo

# Every architecture of the installed transformers (and a -with-past entry per
# causal LM) x every strategy + AUTO, both weight modes; run-wide-auto is the
# AUTO column alone, which CI runs as a gate.
run-wide: setup
	$(BIN)/modelexport zoo run --tier wide --out $(OUT)/wide

# One timed export per cell (--repeat 1): the gate judges verdicts, not speed.
run-wide-auto: setup
	$(BIN)/modelexport zoo run --tier wide --strategies auto --repeat 1 --out $(OUT)/wide-auto

run-idioms: setup
	$(BIN)/modelexport zoo run --tier idioms --out $(OUT)/idioms

# Refit modelexport/selection/selection_rules.json from the three tiers' results (run
# make run-wide, make run and make run-idioms first); prints in-sample and
# cross-validated accuracy per objective.
fit-selector: setup
	$(BIN)/modelexport zoo fit-selector $(OUT)/wide/results.json $(OUT)/zoo/results.json \
	  $(OUT)/idioms/results.json

test: setup
	$(BIN)/ruff check .
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow -p no:cacheprovider

# Everything: the default run and the slow system tests.
test-all: test test-slow

# The gate's proofs beside a CPU hog (about 10 minutes; see README, "The gate").
test-load: setup
	$(PY) -m pytest -q -m load -p no:cacheprovider tests/test_gate.py

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(OUT) .pytest_cache

# --- benchmarks (asv) and the regression gate -------------------------------
BASE ?= HEAD~1
THRESHOLD ?= 0.05
ASV := $(BIN)/asv
MACHINE ?= $(shell hostname)

.PHONY: bench bench-history publish preview gate bench-micro

$(HOME)/.asv-machine.json:
	$(ASV) machine --yes --machine $(MACHINE) > /dev/null

# Record the tiny tier for the current commit, in this venv (no rebuild).
# The export-overhead ratios run at tiny size unless OVERHEAD_TIERS=tiny,full
# (bert-base and ResNet-50 add about 5 minutes).
OVERHEAD_TIERS ?= tiny
bench: setup $(HOME)/.asv-machine.json
	MODELEXPORT_BENCH_OVERHEAD_TIERS=$(OVERHEAD_TIERS) $(ASV) run --python=same --set-commit-hash=$$(git rev-parse HEAD) --machine $(MACHINE)

# Record the last COMMITS commits of main, each from a temporary git worktree
# in this venv (no virtualenv per commit); `make publish` then draws the history.
COMMITS ?= 10
bench-history: setup $(HOME)/.asv-machine.json
	$(PY) -m modelexport.benchmarking.history --count $(COMMITS) --machine $(MACHINE)

# asv's pages load jQuery/flot from CDNs; the second step serves them locally.
publish: setup
	$(ASV) publish
	$(PY) -m modelexport.benchmarking.dashboard .asv/html --vendor .asv/vendor

preview: publish
	$(ASV) preview

# Benchmark BASE and HEAD interleaved; exit 1 with a table of what regressed.
gate: setup
	$(BIN)/modelexport gate --base $(BASE) --threshold $(THRESHOLD)

# pytest-benchmark of the tagging pass against the committed baseline.
bench-micro: setup
	$(PY) -m pytest tests/test_tagging_benchmark.py --benchmark-enable \
	  --benchmark-storage=benchmarks/pytest-baseline --benchmark-compare \
	  --benchmark-compare-fail=median:25% -p no:cacheprovider
