# The commands the README names. Each sets up the virtual environment on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONPATH := functions:.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_OUTDIR ?= cdk.out

.PHONY: install drill test unit infra e2e scale synth lint bench preflight clean

$(STAMP): requirements.txt requirements-dev.txt requirements-lambda.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

drill: $(STAMP)  ## DR drill against an embedded AWS endpoint (moto server), with the real handlers
	$(BIN)/python -m embedded.drill --report-dir reports

test: $(STAMP)  ## the whole suite: unit, infrastructure, end-to-end
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

infra: $(STAMP)
	$(BIN)/python -m pytest tests/infra

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e

scale: $(STAMP)  ## the tests too long for `make test`: a 100,000-object snapshot and restore through the shard path
	$(BIN)/python -m pytest -m scale tests/e2e

synth: $(STAMP)  ## synthesize the CDK app into $(CDK_OUTDIR) without the CDK CLI
	$(BIN)/python app.py

lint: $(STAMP)  ## ruff and mypy (settings in pyproject.toml), then cfn-lint over the synthesized templates
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(MAKE) --no-print-directory synth
	$(BIN)/cfn-lint $(CDK_OUTDIR)/*.template.json

bench: $(STAMP)  ## benchmarks against the embedded server; figures in reports/bench.json
	$(BIN)/python -m embedded.bench --report reports/bench.json

preflight: $(STAMP)  ## read-only checks of the configured account (operator's credentials): what a deploy needs
	$(BIN)/python -m embedded.preflight --report reports/preflight.json

clean:
	rm -rf $(VENV) cdk.out build reports .pytest_cache .mypy_cache .ruff_cache
