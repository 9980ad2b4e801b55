# Two commands on a fresh machine: `make tune` and `make test`.
# Both create .venv and install the pinned dependencies (constraints.txt) and the
# project once; the stamp file makes a second run skip the install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cnn-tune-installed

.PHONY: install tune test browser lint typecheck lock clean gpu-check

install: $(STAMP)

# The pinned torch pulls its CUDA libraries (they also run on CPU): .venv takes ~6.5 GB.
NEEDED_KB := 7000000

$(STAMP): pyproject.toml constraints.txt
	@free=$$(df -Pk . | awk 'NR==2 {print $$4}'); \
	if [ "$$free" -lt $(NEEDED_KB) ]; then echo "make install: warning: $$((free / 1048576)) GB" \
	  "free here; .venv needs about 7 GB (torch with its CUDA libraries). Free some space" \
	  "if pip stops with 'No space left on device'." >&2; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

tune: $(STAMP)
	$(BIN)/cnn-tune run digits

test: $(STAMP) browser
	$(BIN)/python -m pytest

# The report test opens the HTML report in headless Chromium (Debian's chromium package)
# and screenshots it. Nothing to do when chromium is on PATH; otherwise install it with
# apt (as root, or through passwordless sudo).
browser:
	@command -v chromium >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make browser: chromium is not installed and installing it needs root;" \
	  "run: sudo apt-get install chromium (Debian/Ubuntu), then make test" >&2; exit 1; fi; \
	command -v apt-get >/dev/null 2>&1 || { echo "make browser: no apt-get here;" \
	  "install Chromium with your package manager so that 'chromium' is on PATH" >&2; exit 1; }; \
	echo "make browser: installing chromium with apt-get"; \
	$$SUDO apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# What a bare GPU machine (Python 3.12 and torch, but no Ray, no network, 64 MiB carried
# per call) lacks: pinned Ray without its Java jars, pyarrow, pydantic, hyperopt ... in one
# tar.xz (needs PyPI, about 5 minutes). Carry gpu-bundle/ there, then run
# scripts/gpu_bundle_install.sh (docs/benchmarks.md, "Running the GPU check on a bare machine").
.PHONY: gpu-bundle
gpu-bundle: $(STAMP)
	$(BIN)/python scripts/gpu_bundle.py --out gpu-bundle

lint: $(STAMP)
	$(BIN)/ruff check tuning trainables schedulers tests scripts
	$(BIN)/ruff format --check tuning trainables schedulers tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# Re-resolve the lock file from pyproject's ranges in a throwaway venv.
lock:
	rm -rf /tmp/cnn-tune-lock && $(PYTHON) -m venv /tmp/cnn-tune-lock
	/tmp/cnn-tune-lock/bin/pip install --quiet ".[dev,cluster]"
	(grep "^#" constraints.txt; /tmp/cnn-tune-lock/bin/pip freeze --exclude cnn-tune) > constraints.new
	mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache *.egg-info

# On a machine with a CUDA GPU: checks the GPU path (packing, caps, OOM, syncs, throughput)
# in a few minutes; prints PASS/FAIL rows and writes gpu-check.json. See docs/benchmarks.md.
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py --output gpu-check.json
