# One-command set-up and runs. Every target creates/refreshes the virtual environment first.
#   make reproduce   every result at the paper's parameters + the book (the main job)
#   make test        unit tests alongside quick-profile reproduction + book build + browser test
#   make lab         JupyterLab on notebooks/ with this venv's kernel (rerun a chapter by hand)
# Also: make unit (unit tests alone), make slow (the long checks), make browser (browser test of
# the built book), make lowest (unit tests at the lowest declared versions of the dependencies).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB_STAMP := $(VENV)/.installed-lab
# The unit tests run in parallel, one pytest-xdist worker per CPU (an idle worker takes tests
# queued for a busy one); XDIST= runs them in one process.
XDIST ?= -n auto --dist worksteal
# Extra pytest options for unit/slow, e.g. make unit PYTEST_ARGS="-k kernels -x"
PYTEST_ARGS ?=
# The venv's packages are installed by uv (itself installed into the venv by pip): the same PyPI
# releases as pip, in a fraction of pip's time. INSTALLER=pip installs them with pip alone.
INSTALLER ?= uv
# The extras every target's venv has; `make lab` adds `lab`.
EXTRAS := dev,book,dask
ifeq ($(INSTALLER),pip)
INSTALL := $(BIN)/python -m pip install --quiet
else ifeq ($(INSTALLER),uv)
INSTALL := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python
else
$(error INSTALLER must be uv or pip, got '$(INSTALLER)')
endif
# A separate venv for `make lowest`, so that .venv keeps the current versions.
LOWEST_VENV ?= .venv-lowest
# `make test` runs the unit tests while the quick reproduction, the book build and the browser
# test run one after the other (those leave a core idle much of the time); each part's output is
# printed when it ends (GNU make 4). TEST_JOBS=1 runs the unit tests first, then the rest.
TEST_JOBS ?= 2
OUTPUT_SYNC := $(if $(filter output-sync,$(.FEATURES)),--output-sync=target)

.PHONY: setup reproduce quick book test unit slow browser site-checks lowest bench lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip $(filter uv,$(INSTALLER))
	$(INSTALL) -e ".[$(EXTRAS)]"
	touch $(STAMP)

# JupyterLab only where `make lab` needs it: its server stack makes every later import of
# nbformat (papermill, the book build) about two seconds slower (jsonschema's URI-format checks)
$(LAB_STAMP): $(STAMP)
	$(INSTALL) -e ".[$(EXTRAS),lab]"
	touch $(LAB_STAMP)

reproduce: setup
	$(BIN)/lowrank-learning reproduce --profile paper
	$(BIN)/lowrank-learning book

quick: setup
	$(BIN)/lowrank-learning reproduce --profile quick
	$(BIN)/lowrank-learning book

book: setup
	$(BIN)/lowrank-learning book

unit: setup
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

slow: setup
	$(BIN)/python -m pytest $(XDIST) -m slow $(PYTEST_ARGS)

# Finds a Chromium (LOWRANK_BROWSER, see tests/_browser_helpers.py) and says what it uses.
browser: setup
	$(BIN)/python tests/_browser_helpers.py
	$(BIN)/python -m pytest -n auto -m browser tests/test_browser.py

# the quick reproduction and the book, then the browser test of that book
site-checks: setup
	$(MAKE) --no-print-directory quick
	$(MAKE) --no-print-directory browser

test: setup
	$(MAKE) --no-print-directory -j$(TEST_JOBS) $(OUTPUT_SYNC) unit site-checks

# The lowest versions that pyproject.toml allows for the direct dependencies (uv's
# lowest-direct resolution), in $(LOWEST_VENV); then the unit tests.
lowest:
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade pip uv
	$(LOWEST_VENV)/bin/uv pip install --python $(LOWEST_VENV)/bin/python --resolution lowest-direct -e ".[$(EXTRAS)]"
	$(LOWEST_VENV)/bin/python -m pip list --format=freeze
	$(LOWEST_VENV)/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_epochs.py

# The kernel is this venv's python3; the result cache is the one `reproduce` uses.
# Extra options in LAB_ARGS (as root, e.g. in a container: make lab LAB_ARGS=--allow-root).
lab: $(LAB_STAMP)
	LOWRANK_LEARNING_CACHE="$(CURDIR)/.lowrank_cache" $(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)/notebooks" $(LAB_ARGS)

clean:
	rm -rf _build book/results .lowrank_cache
