# tfic — the two commands: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint install protos deploy-check bench bench-peers-venv bench-peers clean format browser

# New packages must re-run the editable install, so the stamp depends on them too. dev pulls every extra
# (each service's, client, demo, bench), torch-reference the torch the EfficientNet-Lite0 check compares with.
$(STAMP): pyproject.toml constraints.txt setup.py scripts/gen_protos.py $(wildcard protos/tfic/v1/*.proto) $(wildcard */__init__.py) $(wildcard */__main__.py)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,torch-reference]'
	$(PY) scripts/gen_protos.py
	touch $(STAMP)

install: $(STAMP)

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

## The main job on the embedded default: digits → train → evaluate → classify, through the three services.
DEMO_DIR ?= $(or $(TFIC_DEMO_DIR),demo-output)
demo: $(STAMP)
	$(VENV)/bin/tfic up --demo --exit --workdir $(DEMO_DIR)

## Also what .pre-commit-config.yaml runs (pre-commit install once, or pre-commit run --all-files).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	@echo "type: ignore comments: $$(grep -rn --include='*.py' 'type: ignore' tfic tfic_cli tfic_demo trainer_svc inference_svc gateway tests bench scripts setup.py | grep -v '^tfic/v1/' | wc -l)"
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Render every Kustomize overlay, validate against the Kubernetes and CRD schemas, probe live services.
deploy-check: $(STAMP)
	@command -v kubectl >/dev/null || { echo "deploy-check needs kubectl (kubectl kustomize)"; exit 1; }
	$(PY) -m pytest -q tests/deploy $(PYTEST_ARGS)

## Debian's chromium and chromedriver for the console's browser tests (installed once, as root; else it says how).
browser:
	sh scripts/ensure_browser.sh

test: $(STAMP) lint browser
	$(PY) -m pytest $(PYTEST_ARGS)

## Every benchmark, one after another (about 25 minutes on 2 cores); results in bench/*/results.
bench: $(STAMP)
	$(PY) -m bench.train_throughput
	$(PY) -m bench.inference.run --quick
	$(PY) -m bench.gateway.run

## BentoML and LitServe for bench/peers, in their own virtualenv: their pins conflict with tfic's (bench/peers/requirements.txt).
PEERS_VENV ?= .venv-peers
$(PEERS_VENV)/.installed: bench/peers/requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q -r bench/peers/requirements.txt
	touch $@

bench-peers-venv: $(PEERS_VENV)/.installed

bench-peers: $(STAMP) bench-peers-venv
	$(PY) -m bench.peers.run --quick

clean:
	rm -rf $(VENV) $(PEERS_VENV) tfic/v1 .mypy_cache .ruff_cache .pytest_cache
