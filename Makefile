# StockZen Sync — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV ?= $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin

# uv must use this machine's interpreter: nothing may download one.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

# Development defaults (documented in the README); anything set in the environment wins.
# Outside development (STOCKZEN_ENV=production) the services refuse these secrets.
export STOCKZEN_ENV ?= development
export JWT_SECRET ?= stockzen-development-only-jwt-secret-do-not-deploy
export INTERNAL_TOKEN_SECRET ?= stockzen-development-only-internal-secret-do-not-deploy
export DATABASE_URL ?= postgresql://stockzen_app@127.0.0.1:5432/stockzen
export DATABASE_ADMIN_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export REDIS_URL ?= redis://127.0.0.1:6379/0
export AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
WEB := $(CURDIR)/clients/web
export WEB_APP_DIR ?= $(WEB)/dist

.PHONY: help run test env services migrate lint token bench bench-queues chaos cluster-rabbit cluster-postgres cluster chaos-cluster test-cluster clean web web-test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

run: env services migrate web ## run gateway (:8000, browser app at /app/), inventory (:8001) and the sync worker, logging readable lines; Ctrl-C stops all
	PATH="$(BIN):$$PATH" LOG_FORMAT="$${LOG_FORMAT:-console}" $(BIN)/honcho start -f Procfile

test: env services ## run every test (web unit tests, build, then unit, integration, e2e) against the local services
	bash scripts/ensure_tools.sh
	$(MAKE) web-test
	$(BIN)/python -m pytest

# npm ci only when node_modules is missing or older than the lockfile (npm writes its own copy there).
$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $@

web: $(WEB)/node_modules/.package-lock.json ## build the browser app into clients/web/dist
	cd $(WEB) && npm run build

web-test: $(WEB)/node_modules/.package-lock.json ## the browser app's unit tests, then its build
	cd $(WEB) && npm test
	cd $(WEB) && npm run build

$(UV):
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv==$(UV_VERSION)

env: $(UV) ## create .venv from uv.lock (exact versions, no interpreter download; bytecode compiled, so the CLI starts at once)
	$(UV) sync --frozen --all-packages --quiet --compile-bytecode
	$(BIN)/python -m compileall -q libs/*/src services/*/src clients/python/src

services: ## make sure Postgres, Redis and RabbitMQ answer (starts local installs that are down)
	$(PYTHON) scripts/ensure_services.py

migrate: env services ## create the roles and the database if missing, apply migrations
	$(BIN)/stockzen-inventory migrate

lint: env $(WEB)/node_modules/.package-lock.json ## ruff and mypy --strict, and ESLint (typescript-eslint) on the browser app
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cd $(WEB) && npx eslint .

token: env ## mint a development token: make token [TENANT=<uuid>] [USER_ID=<id>]
	@$(BIN)/python scripts/mint_token.py $(if $(TENANT),--tenant $(TENANT)) $(if $(USER_ID),--user $(USER_ID))

bench: env services web ## throughput and latency through the real stack, fairness between tenants, then a large tenant's first sync and clicks in both clients (minutes)
	bash scripts/ensure_tools.sh
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)
	$(BIN)/python -m bench.fairness $(FAIRNESS_ARGS)
	$(BIN)/python -m bench.large_tenant $(LARGE_TENANT_ARGS)

bench-queues: env services ## the whole path on classic queues (one node) against quorum queues on three RabbitMQ nodes, in turns (minutes)
	$(BIN)/python -m bench.queue_types $(BENCH_QUEUES_ARGS)

chaos: env services web ## long chaos run: devices and real Python and browser clients work through killed workers, cut links and a faulty link; prints lost/doubled/diverged
	bash scripts/ensure_tools.sh
	$(BIN)/python chaos/run_chaos.py $(CHAOS_ARGS)

cluster-rabbit: ## three clustered RabbitMQ nodes on 127.0.0.1:5681-5683, for quorum queues (it prints AMQP_URL); Ctrl-C stops them
	$(PYTHON) -m scripts.rabbit_cluster

cluster-postgres: env ## a Postgres primary + synchronous standby under Patroni and etcd (5441, 5442), migrated; prints DATABASE_URL; Ctrl-C stops them
	bash scripts/ensure_tools.sh --cluster
	$(BIN)/python -m scripts.pg_cluster

cluster: env services ## the whole topology: 3 RabbitMQ (quorum), Patroni primary + sync standby, 2 gateways/workers/inventories, HAProxy on :8100; Ctrl-C stops all
	bash scripts/ensure_tools.sh --cluster
	$(BIN)/python -m scripts.cluster

chaos-cluster: env services ## devices push through `make cluster` while the queue leader, the Postgres primary (killed, then hung), a worker, a gateway, etcd and a whole machine fail; prints failover times
	bash scripts/ensure_tools.sh --cluster
	$(BIN)/python -m chaos.run_cluster_chaos $(CHAOS_ARGS)

test-cluster: env ## the cluster tests (deselected from `make test`): Postgres failover under Patroni; installs patroni and etcd if missing
	bash scripts/ensure_tools.sh --cluster
	$(BIN)/python -m pytest -m cluster

clean: ## remove the virtual environments and the web app's dependencies and build
	rm -rf $(VENV) $(CURDIR)/.tools $(WEB)/node_modules $(WEB)/dist
