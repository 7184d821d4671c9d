# One-command set-up and runs. Every target creates/refreshes the virtual environment first.
#   make reproduce   every result at the paper's parameters + the book (the main job)
#   make test        unit tests + quick-profile reproduction + book build + browser test
#   make lab         JupyterLab on notebooks/ with this venv's kernel (rerun a chapter by hand)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup reproduce quick book test unit browser bench lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,book,lab,dask]"
	touch $(STAMP)

reproduce: setup
	$(BIN)/lowrank-learning reproduce --profile paper
	$(BIN)/lowrank-learning book

quick: setup
	$(BIN)/lowrank-learning reproduce --profile quick
	$(BIN)/lowrank-learning book

book: setup
	$(BIN)/lowrank-learning book

unit: setup
	$(BIN)/python -m pytest

browser: setup
	$(BIN)/python tests/_browser_helpers.py
	$(BIN)/python -m pytest -m browser tests/test_browser.py

test: unit quick browser

bench: setup
	$(BIN)/python benchmarks/bench_epochs.py

# The kernel is this venv's python3; the result cache is the one `reproduce` uses.
# Extra options in LAB_ARGS (as root, e.g. in a container: make lab LAB_ARGS=--allow-root).
lab: setup
	LOWRANK_LEARNING_CACHE="$(CURDIR)/.lowrank_cache" $(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)/notebooks" $(LAB_ARGS)

clean:
	rm -rf _build book/results .lowrank_cache
