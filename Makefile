# fer-workbench: every target sets itself up (a virtual environment in .venv) on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 5000
ARGS   ?=

FER_DEFAULT := ../shared/data/fer2013/fer2013.csv.gz

.PHONY: setup run fer2013 help sweep reproduce-65 test test-fast lint format ui dashboard bench bench-sweep bench-predict bench-shipped bench-dups bench-fer clean-cache

## This list: every target with the first line of the comment above it
help:
	@awk '/^## / { if (!doc) doc = substr($$0, 4); next } \
	     /^[a-z0-9-]+:/ { if (doc) printf "  %-14s %s\n", substr($$1, 1, length($$1) - 1), doc; doc = ""; next } \
	     /^$$/ { doc = "" }' $(MAKEFILE_LIST)

## Create .venv and install the pinned packages (every target does this first)
setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## The main job: the reference CNN on the bundled FER-2013 sample, logged to ./mlruns
run: setup
	$(BIN)/python -m workbench.run baseline $(ARGS)

## The fer2013 experiment (VGG on 40 px crops, AdamW, 60 epochs, ten-crop; full FER-2013; FER=/path/fer2013.csv for yours; resumable)
fer2013: setup
	$(BIN)/python -m workbench.run fer2013 --set data.path=$(or $(FER),$(FER_DEFAULT)) $(ARGS)

## An Optuna sweep of the baseline on the bundled sample (resumable; see experiments/sweep.yaml)
TRIALS ?= 40
sweep: setup
	$(BIN)/python -m workbench.sweep --trials $(TRIALS) $(ARGS)

## The original project's protocol (SMOTE before the split) and its honest twin, compared.
## make reproduce-65 EXPW=/path/to/ExpW [CROPS=/path/to/crops] | DATA=fer2013 [FER=/path/fer2013.csv] ;
## EPOCHS=1 for a quick pass. CROPS: face crops cut by label.lst's boxes, used instead of the photos
## (this project's ExpW subset: make reproduce-65 EXPW=../shared/data/expw CROPS=../shared/data/expw/faces96)
DATA ?= expw
reproduce-65: setup
	$(BIN)/python -m workbench.reproduce --data $(DATA) $(if $(EXPW),--path $(EXPW)) \
		$(if $(filter fer2013,$(DATA)),--path $(or $(FER),$(FER_DEFAULT))) \
		$(if $(CROPS),--set data.crops_dir=$(CROPS)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(ARGS)

## Time to accuracy on full FER-2013: the original's recipe, fer2013-fast and fer2013 (resumable; hours)
bench-fer: setup
	$(BIN)/python benchmarks/time_to_accuracy.py --data $(or $(FER),$(FER_DEFAULT)) $(ARGS)

## ruff, then the test suite (real data, PostgreSQL, MLflow server, Chromium; under an hour on 2 Zen3 cores)
test: setup lint
	$(BIN)/python -m pytest -q --durations=10

## ruff: lint and formatting (100 columns); part of make test, so CI runs it
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Reformat the code in place
format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Everyday: everything but the slow tests (training, servers, packaging); about 3 minutes on 2 cores
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

## The MLflow UI on the local store: http://127.0.0.1:$(PORT)
ui: setup
	@echo "MLflow UI: http://127.0.0.1:$(PORT)/\#/experiments?workflowType=machine_learning  (Ctrl-C stops it)"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --default-artifact-root ./mlruns/artifacts \
		--host 127.0.0.1 --port $(PORT)

## optuna-dashboard on the sweep storage (default ./mlruns/optuna.db; OPTUNA_STORAGE=... for another)
DASH_PORT ?= 8080
dashboard: setup
	@echo "Optuna dashboard: http://127.0.0.1:$(DASH_PORT)  (Ctrl-C stops it)"
	$(BIN)/optuna-dashboard $(or $(OPTUNA_STORAGE),sqlite:///mlruns/optuna.db) --host 127.0.0.1 --port $(DASH_PORT)

## Training throughput of each model, input form and precision vs the original way, and cache load times
bench: setup
	$(BIN)/python benchmarks/throughput.py $(ARGS)

## The same small sweep with and without pruning: epochs trained and best validation macro-F1
bench-sweep: setup
	$(BIN)/python benchmarks/sweep_pruning.py $(ARGS)

## Face detection, classification (batched vs one face per call) and video frames/s
bench-predict: setup
	$(BIN)/python benchmarks/predict_speed.py $(ARGS)

## The shipped model on FER-2013 PrivateTest, ExpW (cross-dataset; with and without eye alignment), FER+
bench-shipped: setup
	$(BIN)/python benchmarks/shipped_model.py $(ARGS)

## FER-2013's faces copied across its splits, and the shipped model's PrivateTest with and without them
bench-dups: setup
	$(BIN)/python benchmarks/duplicates.py $(if $(FER),--fer $(FER)) $(ARGS)

## Delete the decoded-face cache (~/.cache/fer-workbench)
clean-cache:
	rm -rf $${XDG_CACHE_HOME:-$$HOME/.cache}/fer-workbench
