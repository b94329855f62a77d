# The two commands of the README: `make book` and `make test`.
# Both create .venv/ from the exact lock file the first time they run.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# One thread per process: the stored notebook outputs are reproduced exactly,
# and two pytest-xdist workers do not fight over two cores.
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export PYTHONHASHSEED := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export JAX_PLATFORMS := cpu
export TF_CPP_MIN_LOG_LEVEL := 3
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1

CHAPTERS := $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -not -path '*/_build/*' | sort)
JB_FLAGS := -W -n --keep-going

.PHONY: help venv mathjax chromium book test test-lib test-notebooks test-kernels test-book test-browser notebooks lock clean gpu-check

help:
	@echo "make book       build the HTML book into _build/html (sets up .venv first)"
	@echo "make test       run everything CI checks: pytest, nbval on every chapter, the -W book build,"
	@echo "                every page of the built book in headless Chromium with the network blocked"
	@echo "make test-browser  only the browser test, on the book already in _build/html"
	@echo "make test-kernels  every chapter under strict nbval with each CPU kernel set this machine can run"
	@echo "make notebooks  re-execute every chapter in place (authors), then strip volatile metadata"
	@echo "make lock       re-resolve requirements.in into requirements-lock.txt and environment.yml"

$(STAMP): requirements-lock.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# uv where it works (a third of pip's time), otherwise pip: tools/install_lock.py.
	$(BIN)/python tools/install_lock.py $(BIN)/python
	@# Byte-compile on every core at once (pip compiles one file at a time); a few
	@# Python-2-only files in third-party packages fail to compile, as they do under pip.
	@$(BIN)/python -m compileall -q -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 || true
	@touch $@

venv: $(STAMP)

# MathJax 3 is served from the book itself, so the book reads offline: the
# exact npm package pinned in package-lock.json, fetched from the npm registry
# and verified against its integrity hash by a Python script (no npm needed),
# then unpacked where _config.yml's html_static_path expects it (Sphinx copies
# it to _build/html/_static/mathjax/).
MATHJAX := _build/vendor/mathjax/tex-mml-chtml.js

$(MATHJAX): package-lock.json tools/fetch_mathjax.py
	$(PYTHON) tools/fetch_mathjax.py _build/vendor/mathjax
	@touch $@

mathjax: $(MATHJAX)

# Debian's Chromium for the browser test; never a browser download.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null
	@$(CHROMIUM) --version 2>/dev/null | grep -v 'unexpected operator' || true

chromium: $(CHROMIUM)

book: $(STAMP) $(MATHJAX)
	$(BIN)/jupyter-book build . $(JB_FLAGS)
	@echo "The book is at $(CURDIR)/_build/html/index.html"

test-lib: $(STAMP)
	$(BIN)/python -m pytest tests -p no:cacheprovider -q -n 2 --dist loadgroup

# Strict nbval, twice: under the kernels this CPU picks, and under the baseline
# kernel set (SSE3-era OpenBLAS, scalar ATen, generic numba), which every x86-64
# CPU runs. A stored output that shows CPU-dependent last bits fails one of the
# two. `make test-kernels` runs every kernel set of tools/kernel_sets.py.
NBVAL := $(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with tools/nbval-sanitize.cfg \
	-p no:cacheprovider -q -n 2 --dist loadfile
KERNEL_SETS := native baseline haswell sandybridge-npbase zen skylakex

# Timing cells (marked NBVAL_IGNORE_OUTPUT, never compared) run one round only:
# OPTBOOK_TIMING_SMOKE, see optbook/benchmark.py.
test-notebooks: $(STAMP)
	@export OPTBOOK_TIMING_SMOKE=1; status=0; \
	for set in native baseline; do \
		$(BIN)/python tools/kernel_sets.py run $$set -- $(NBVAL) $(CHAPTERS) || status=1; \
	done; exit $$status

# For authors before committing a chapter (CHAPTERS=book/part2/04_worked_example.ipynb
# narrows it): every kernel set this CPU can execute; the others are skipped, and said so.
test-kernels: $(STAMP)
	@status=0; \
	for set in $(KERNEL_SETS); do \
		$(BIN)/python tools/kernel_sets.py run $$set -- $(NBVAL) $(CHAPTERS) || status=1; \
	done; exit $$status

test-book: $(STAMP) $(MATHJAX)
	$(BIN)/jupyter-book build . $(JB_FLAGS)

# Every page of the built book, opened in headless Chromium with every request
# that is not to the local server blocked; screenshots go to _build/screenshots/.
# Two pytest-xdist workers, each with its own browser: a page spends much of its
# time waiting on MathJax and layout, so two overlap well even on two cores.
# The file is not named test_*.py, so `pytest tests` (test-lib) never collects it.
test-browser: $(STAMP) $(CHROMIUM)
	@test -f _build/html/index.html || $(MAKE) --no-print-directory book
	$(BIN)/python -m pytest tests/browser/browser_check.py -p no:cacheprovider -q -n 2

# Every step runs even if an earlier one failed, so one run reports everything;
# the summary lines are printed together at the end and any failure fails the target.
test: $(STAMP)
	@set -o pipefail; status=0; mkdir -p _build; : > _build/test-summary.txt; \
	for step in test-lib test-notebooks test-book test-browser; do \
		echo "=== $$step ==="; start=$$(date +%s); \
		if $(MAKE) --no-print-directory $$step 2>&1 | tee _build/$$step.log; then result=ok; else result=FAILED; status=1; fi; \
		line=$$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)|(passed|failed|errors?) in [0-9.]+s' _build/$$step.log | tail -n 1); \
		echo "$$step: $$result in $$(( $$(date +%s) - start ))s $${line}" >> _build/test-summary.txt; \
	done; \
	echo "=== summary ==="; cat _build/test-summary.txt; exit $$status

notebooks: $(STAMP)
	$(BIN)/python tools/execute_notebooks.py $(CHAPTERS)

# On a machine with an H100/H200: the fused kernel natively, the benchmark, and its record in book/data/.
gpu-check: $(STAMP)
	$(BIN)/python -m optbook.bench.gpu_check

lock:
	rm -rf /tmp/optbook-lock-venv && $(PYTHON) -m venv /tmp/optbook-lock-venv
	/tmp/optbook-lock-venv/bin/python -m pip install --quiet -r requirements.in
	/tmp/optbook-lock-venv/bin/python tools/make_lock.py /tmp/optbook-lock-venv

clean:
	rm -rf _build
