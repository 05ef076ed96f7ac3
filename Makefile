# alertfusion: the targets people expect. `make demo` and `make test` set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_BUNDLE := build/models/demo
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
# Offline, deterministic and quiet by default.
export HF_HUB_OFFLINE := 1
# numpy's BLAS: the feature matrices are too small to gain from threads (measured 10x slower
# and erratic with 2 on this 2-core machine), and they would compete with ONNX Runtime's.
export OPENBLAS_NUM_THREADS := 1

.PHONY: setup test test-fast lint format demo backfill serve bench synth deploy smoke bundle-demo system-deps clean

## setup: venv + pinned Python packages, the pinned CDK CLI, system packages, the demo model bundle
setup: $(VENV)/.installed node_modules/.installed system-deps $(DEMO_BUNDLE)/manifest.json

$(VENV)/.installed: requirements.txt requirements-export.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-deps -r requirements.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt -c requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## system-deps: Debian packages the tests use (Chromium + a Korean font for the page's browser tests)
system-deps:
	@if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi nanum; then \
	  echo "installing Debian chromium and fonts-nanum (browser tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends chromium fonts-nanum fontconfig >/dev/null; \
	fi

## bundle-demo: the full-size int8 demo bundle (deterministic random weights, marked untrained)
bundle-demo: $(DEMO_BUNDLE)/manifest.json

# Rebuilt when the export code changes, so a checkout never serves a bundle older than its code.
$(DEMO_BUNDLE)/manifest.json: $(wildcard model_export/*.py) | $(VENV)/.installed
	$(PY) -m model_export demo --out $(DEMO_BUNDLE) --force

## test: every tier (unit, integration, infra, e2e, browser)
test: setup
	$(PY) -m pytest

## test-fast: unit tier only
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m unit

## lint: ruff (lint + format check) and mypy
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(VENV)/.installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## demo: the asynchronous pipeline end to end against moto (ARGS="--audio FILE --text '...'")
demo: setup
	$(PY) -m devstack.demo $(ARGS)

## backfill: a backfill of N sample recordings, twice, through moto's state-machine interpreter (ARGS="--demo 20")
backfill: setup
	$(PY) -m devstack.backfill $(if $(ARGS),$(ARGS),--demo 20)

## serve: the HTTP API on 127.0.0.1:$${PORT:-8000} with the demo bundle and moto as the embedded AWS
serve: setup
	$(PY) -m devstack.serve $(ARGS)

## bench: the seed path (PyTorch + librosa) against this engine; writes build/bench/report.json
bench: setup
	$(PY) -m bench

## synth: all stacks' CloudFormation templates in cdk.out/ (offline, no AWS account)
synth: setup
	npx cdk synth --quiet -c fallback=true -c fallback_allowed_cidrs=203.0.113.0/24

## deploy: cdk deploy (needs AWS credentials and `npx cdk bootstrap` once per account/region)
deploy: setup
	npx cdk deploy --all $(CDK_ARGS)

## smoke: post-deploy smoke test against the deployed stacks' outputs
smoke: $(VENV)/.installed
	$(PY) -m devstack.smoke $(ARGS)

clean:
	rm -rf build cdk.out .pytest_cache .mypy_cache .ruff_cache
