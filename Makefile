# qualitylab front door. `make demo` and `make test` are the two commands.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= data/demo
JOBS   ?= 2
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: demo test lint lab data venv dev clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,spark]"
	touch $(STAMP) $@

venv: $(STAMP)
dev: $(DEVSTAMP)

$(DATA)/decisions: | $(STAMP)
	$(BIN)/qualitylab demo-data --out $(DATA) --scale demo --seed 42

data: $(DATA)/decisions

demo: $(STAMP) data
	$(BIN)/qualitylab validate --data $(DATA)
	$(BIN)/qualitylab headline --data $(DATA)
	$(BIN)/qualitylab run --data $(DATA) --markets all --notebooks all --jobs $(JOBS) --out reports
	@echo "open reports/index.html"

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

test: $(DEVSTAMP) lint
	$(BIN)/python -m pytest -q

# Benchmarks (issue #8): all workloads, or one with BENCH=W1 (W1,W2,W3,W4,growth).
# Generates data/large (~10M decisions) on first use; writes benchmarks/results/<date>.md.
bench: $(DEVSTAMP)
	$(BIN)/python benchmarks/bench.py $(if $(BENCH),--workloads $(BENCH))

lab: $(STAMP) data
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) data/demo reports .pytest_cache
