# Everything a fresh machine needs: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv deploy-tools java-tools test unit integration lint lock demo bench bench-scale clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(wildcard consumer/pipeline/_attributes*.[ch])
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,kcl]'
	touch $(STAMP)

## The image's exact dependencies (deploy/requirements*.lock, with hashes) from pyproject.toml;
## run after changing a dependency (tests/deploy fails while they disagree).
LOCK := $(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links
lock: venv
	$(LOCK) --output-file deploy/requirements.lock pyproject.toml
	$(LOCK) --extra kcl --output-file deploy/requirements-kcl.lock pyproject.toml

lint: venv
	$(VENV)/bin/ruff check consumer tests
	$(VENV)/bin/ruff format --check consumer tests

## promtool (Debian's `prometheus` package), helm and kustomize (built from the Go module proxy into
## .tools/bin) for tests/deploy; each installed only when missing. The other validators (kubernetes-validate,
## hadolint, yamllint) come with the `test` extra.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HELM_VERSION := v4.3.2
HELM := .tools/bin/helm
KUSTOMIZE_VERSION := v5.8.1
KUSTOMIZE := .tools/bin/kustomize
# KEDA's ScaledObject CRD, the schema the chart's ScaledObject is validated against (from the Go module proxy).
KEDA_VERSION := v2.20.2
KEDA_CRD := .tools/crds/keda.sh_scaledobjects.yaml
deploy-tools: $(HELM) $(KUSTOMIZE) $(KEDA_CRD)
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing promtool (Debian package prometheus)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@promtool --version | head -n 1 && command -v promtool >/dev/null

$(HELM):
	@echo "building helm $(HELM_VERSION) from the Go module proxy into .tools/bin (once)"
	GOBIN=$(CURDIR)/.tools/bin GOFLAGS=-mod=mod go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	@$(HELM) version --short

$(KUSTOMIZE):
	@echo "building kustomize $(KUSTOMIZE_VERSION) from the Go module proxy into .tools/bin (once)"
	GOBIN=$(CURDIR)/.tools/bin GOFLAGS=-mod=mod go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	@$(KUSTOMIZE) version

$(KEDA_CRD):
	@mkdir -p $(dir $@)
	cp "$$(go mod download -json github.com/kedacore/keda/v2@$(KEDA_VERSION) | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')/config/crd/bases/$(notdir $@)" $@
	chmod u+w $@

## Java 17 and Maven build the real OpenSearch node the tests start (tests/opensearch_node) and the
## KCL launcher (deploy/kcl); Maven's ~/.m2 caches their jars. Installed from Debian only when missing.
java-tools:
	@command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 || { \
	  echo "installing Java 17 and Maven (Debian packages openjdk-17-jdk-headless, maven)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless maven >/dev/null; }
	@java -version 2>&1 | head -n 1 && mvn -v 2>/dev/null | head -n 1

## The whole suite: unit, contract, integration and deploy/ validation tests. The session fixtures
## start moto server, osmem-server and a real OpenSearch node on loopback and stop them at the end.
test: venv deploy-tools java-tools lint
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit

integration: venv
	$(PY) -m pytest tests/integration

## Runs the service against embedded emulators with a writer; Ctrl-C stops everything.
demo: venv
	$(PY) -m tests.support.demo

## Throughput of decode → version → bulk, and of the backfill, on osmem-server and a real
## OpenSearch node, each against its baselines in the same run; what routes and a transform cost;
## the wire client against boto3; a reindex next to the backfill alone, and the stream reads of two
## generations; the native worker against the KCL daemon: drain rate, CPU and memory, and the lease
## tables' capacity units (README).
bench: venv java-tools
	$(PY) -m tests.bench.bulk_path
	$(PY) -m tests.bench.route_cost
	$(PY) -m tests.bench.backfill
	$(PY) -m tests.bench.wire_calls
	$(PY) -m tests.bench.modes
	$(PY) -m tests.bench.reindex
	$(PY) -m tests.bench.lease_units

## One worker and many shards: hot-path CPU per record, catch-up (on a real OpenSearch node), 1000
## shards alone and over a pool of four (README).
bench-scale: venv java-tools
	$(PY) -m tests.bench.scale

clean:
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache .hypothesis build *.egg-info
