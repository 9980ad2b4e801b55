# Two commands on a fresh machine: `make tune` and `make test`.
# Both create .venv and install the pinned dependencies (constraints.txt) and the
# project once; the stamp file makes a second run skip the install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cnn-tune-installed

.PHONY: install tune test lint typecheck lock clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

tune: $(STAMP)
	$(BIN)/cnn-tune run digits

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check tuning trainables schedulers tests scripts
	$(BIN)/ruff format --check tuning trainables schedulers tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# Re-resolve the lock file from pyproject's ranges in a throwaway venv.
lock:
	rm -rf /tmp/cnn-tune-lock && $(PYTHON) -m venv /tmp/cnn-tune-lock
	/tmp/cnn-tune-lock/bin/pip install --quiet ".[dev]"
	(head -n 2 constraints.txt; /tmp/cnn-tune-lock/bin/pip freeze --exclude cnn-tune) > constraints.new
	mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache *.egg-info
