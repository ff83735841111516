# fer-workbench: every target sets itself up (a virtual environment in .venv) on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 5000
ARGS   ?=

.PHONY: setup run test ui bench clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## The main job: the reference CNN on the bundled FER-2013 sample, logged to ./mlruns
run: setup
	$(BIN)/python -m workbench.run baseline $(ARGS)

## The test suite (real data, real MLflow store, about 5 minutes on 2 cores)
test: setup
	$(BIN)/python -m pytest -q

## The MLflow UI on the local store: http://127.0.0.1:$(PORT)
ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --default-artifact-root ./mlruns/artifacts \
		--host 127.0.0.1 --port $(PORT)

## Training throughput (this pipeline vs the original ImageDataGenerator) and cache load times
bench: setup
	$(BIN)/python benchmarks/throughput.py $(ARGS)

clean-cache:
	rm -rf $${XDG_CACHE_HOME:-$$HOME/.cache}/fer-workbench
