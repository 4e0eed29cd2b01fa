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
export SAM_CLI_TELEMETRY := 0

# Lambda's platform: python3.13 on arm64 (Graviton).
LAMBDA_PIP_PLATFORM := --platform manylinux2014_aarch64 --implementation cp --python-version 3.13 --only-binary=:all:
# A CPython 3.13, if this machine has one (PATH or pyenv), compiles the artifacts' bytecode:
# Lambda's code directories are read-only, so without it every cold start compiles the
# layer again (~250-300 ms measured by bench). Optional: the artifacts work without it.
LAMBDA_PYTHON = $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && { echo $$p; break; }; done)
COMPILE_FOR_LAMBDA = $(if $(LAMBDA_PYTHON),$(LAMBDA_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash,@echo "no CPython 3.13 here: shipping no bytecode for")

.PHONY: help install run test test-fast lint format typecheck validate build openapi openapi-check check bench bench-quick clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(SAM_ENV)/.installed:
	$(PYTHON) -m venv $(SAM_ENV)
	$(SAM_ENV)/bin/pip install --quiet --upgrade pip
	$(SAM_ENV)/bin/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed $(SAM_ENV)/.installed node_modules/.installed ## Install Python deps, SAM CLI and DynamoDB Local

run: $(BIN)/.installed node_modules/.installed ## Run the whole service locally (API :3000, Lambda :3001)
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

check: lint typecheck validate openapi-check test build bench-quick ## Every quality gate (bench-quick keeps the benchmarks from rotting)

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
	$(PYTHON) -m pip install --quiet --no-deps --target "$(ARTIFACTS_DIR)/python" $(LAMBDA_PIP_PLATFORM) -r requirements.txt
	cp -R serverless_credits "$(ARTIFACTS_DIR)/python/"
	find "$(ARTIFACTS_DIR)/python" -name __pycache__ -type d -prune -exec rm -rf {} +
	$(COMPILE_FOR_LAMBDA) "$(ARTIFACTS_DIR)/python"

build-%Function:
	cp -R . "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)" -name __pycache__ -type d -prune -exec rm -rf {} +
	$(COMPILE_FOR_LAMBDA) "$(ARTIFACTS_DIR)"
