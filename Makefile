# alertfusion: the targets people expect. `make demo` and `make test` set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_BUNDLE := build/models/demo
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
# Offline, deterministic and quiet by default.
export HF_HUB_OFFLINE := 1
# numpy's BLAS: the feature matrices are too small to gain from threads (slower and erratic
# with two), and they would compete with ONNX Runtime's.
export OPENBLAS_NUM_THREADS := 1
# An extra index for PyTorch's CPU build (model export only). Empty here, where pip already
# finds the CPU wheel the lock hashes; on an ordinary Linux machine the default index's
# torch is the CUDA build (gigabytes, and not the locked file):
#   make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
PIP_TORCH_INDEX := $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))
LOCKS := locks/pip.txt locks/runtime.txt locks/export.txt locks/dev.txt
# the recipe `make demo ARGS="--recipe NAME"` names (recipes/NAME.json), if any
RECIPE_NAMES := $(basename $(notdir $(wildcard recipes/*.json)))
DEMO_RECIPE := $(filter $(RECIPE_NAMES),$(word 2,$(filter --recipe $(RECIPE_NAMES),$(ARGS))))

.PHONY: setup test test-fast test-bundles lint format demo backfill serve token bench synth deploy smoke bundle-demo system-deps lock image-deps clean

## setup: venv + locked Python packages, the pinned CDK CLI, system packages, the demo model
## bundle, the tests' tiny bundles
setup: $(VENV)/.installed node_modules/.installed system-deps $(DEMO_BUNDLE)/manifest.json test-bundles

# Every package from the hash locks (locks/*.txt, `make lock`): pip itself first, then the
# runtime, export and dev layers in one resolution; pip refuses any file whose sha256 the
# lock does not list.
$(VENV)/.installed: $(LOCKS) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r locks/pip.txt
	$(PY) -m pip install --quiet --require-hashes $(PIP_TORCH_INDEX) \
	  -r locks/runtime.txt -r locks/export.txt -r locks/dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

## lock: rewrite locks/*.txt from requirements*.txt (pip-tools, with the network: PyPI)
lock: $(VENV)/.installed
	rm -rf build/lock-tools && $(PY) -m venv build/lock-tools
	build/lock-tools/bin/pip install --quiet pip-tools==7.7.0
	$(PY) tools/lockfiles.py --pip-compile build/lock-tools/bin/pip-compile \
	  $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))

## image-deps: every runtime pin has a hashed wheel for the image's Python on x86_64 and arm64 (PyPI)
image-deps: $(VENV)/.installed
	$(PY) -m infra.image_deps

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

## test: every tier (unit, export, integration, infra, e2e, browser)
test: setup
	$(PY) -m pytest

## test-bundles: the tiny bundles every tier tests with, cached in build/test-bundles/<key>; built
## (with PyTorch) only when the export code, the samples, the packages or the CPU changed
test-bundles: $(VENV)/.installed
	$(PY) -m tests.bundle_cache

## test-fast: the unit tier, refusing every import of PyTorch, transformers, librosa, SentencePiece
test-fast: test-bundles
	TESTS_REFUSE_IMPORTS=torch,transformers,librosa,sentencepiece $(PY) -m pytest tests/unit -m unit

## lint: ruff (lint + format check) and mypy
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(VENV)/.installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## demo: the asynchronous pipeline end to end against moto (ARGS="--audio FILE --text '...'";
## ARGS="--recipe infant-cry": on that recipe's demo bundle, built when missing)
demo: setup $(if $(DEMO_RECIPE),build/models/$(DEMO_RECIPE)/manifest.json)
	$(PY) -m devstack.demo $(ARGS)

# a recipe's demo bundle (`make demo ARGS="--recipe NAME"`), rebuilt when the recipe or the
# export code changes
build/models/%/manifest.json: recipes/%.json $(wildcard model_export/*.py) | $(VENV)/.installed
	$(PY) -m model_export demo --recipe $< --out build/models/$* --force

## backfill: a backfill of N sample recordings, twice, through moto's state-machine interpreter (ARGS="--demo 20")
backfill: setup
	$(PY) -m devstack.backfill $(if $(ARGS),$(ARGS),--demo 20)

## serve: the HTTP API on 127.0.0.1:$${PORT:-8000} with the demo bundle and moto as the embedded AWS
## (ARGS="--bundle DIR --bundle DIR2": several bundles, the page switches between them)
serve: setup
	$(PY) -m devstack.serve $(ARGS)

## token: an access token (last line) of a demo user of the local stack `make serve ARGS="--auth cognito"`
## runs on the same PORT; the user (USER=alice) is created on first use
# USER only from make's command line: the environment's USER is the login name.
token: $(VENV)/.installed
	@$(PY) -m devstack.token --port $${PORT:-8000} $(if $(filter command line,$(origin USER)),$(USER),alice)

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
