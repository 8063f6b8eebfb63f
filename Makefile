# The two commands a newcomer types: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=
DEMO_ARGS ?=
# The slow set (e2e journeys, Flower simulations and deployments) runs in CI (CI=true)
# or when asked with SLOW=1; a plain `make test` runs the rest.
SLOW ?=
PYTEST_MARKS := $(if $(or $(filter true 1 yes,$(CI)),$(SLOW)),,-m "not slow")
# Test processes (pytest-xdist): one per core by default; most slow tests wait on
# subprocesses and polling, not the CPU. PYTEST_WORKERS=0 runs them all in one process.
# --dist loadscope keeps each module on one worker, so its module-scoped fixtures (a
# deployment, a trained model) are built once.
PYTEST_WORKERS ?= auto
PYTEST_XDIST := -n $(PYTEST_WORKERS) --dist loadscope

.PHONY: demo test lint format install dev clean test-services

demo: $(VENV)/.installed
	$(VENV)/bin/flip demo $(DEMO_ARGS)

test: $(VENV)/.installed-dev test-services
	$(VENV)/bin/pytest $(PYTEST_XDIST) $(PYTEST_MARKS) $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Orthanc with its DICOMweb plugin, and Chromium for the web app's browser tests, from Debian's
# packages; where they cannot be installed (no root, no apt) those tests skip, except in CI
# (CI=true), where they fail. Playwright drives /usr/bin/chromium: never `playwright install`.
test-services:
	@command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb; } \
	  || echo "Orthanc is not installed: the DICOMweb tests will skip"
	@[ -x /usr/bin/chromium ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	  || echo "Chromium is not installed: the browser tests will skip"

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so nothing that depends on it pulls a CUDA build.
$(VENV)/.torch: $(PY)
	$(PIP) install torch==2.13.0
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install -e ".[dev,nlp]" torch==2.13.0
	touch $@

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
