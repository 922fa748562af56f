# The two set-up commands (README.md): `make demo` and `make test`. Both create .venv when missing.
# `make check`: ruff and the unit tier only (tests/unit: no server, process or real time), before every commit.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The real servers the integration tests start (never mocks), as command:Debian-package.
SERVERS := prometheus:prometheus victoria-metrics:victoria-metrics influxd:influxdb chromium:chromium docker-compose:docker-compose openssl:openssl systemd-analyze:systemd node:nodejs npm:npm
# Grafana's own dashboard types (of the Grafana compose.yaml runs) and TypeScript: the dashboards' schema check.
GRAFANA_SCHEMA := .cache/grafana-schema
GRAFANA_SCHEMA_PACKAGES := @grafana/schema@11.1.3 typescript@5.9.3
# PyTorch for the workload tests: a CPU build (a plain `torch` from PyPI is a CUDA build of several GB).
TORCH ?= torch==2.13.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test check lint servers grafana-schema mutate clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet '$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[test,keras,torch,codecarbon]'
	touch $@

servers:
	@missing=""; for s in $(SERVERS); do command -v $${s%%:*} >/dev/null || missing="$$missing $${s#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from Debian"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

grafana-schema: servers
	@[ -d $(GRAFANA_SCHEMA)/node_modules/@grafana/schema ] || \
	  npm install --silent --no-audit --no-fund --prefix $(GRAFANA_SCHEMA) $(GRAFANA_SCHEMA_PACKAGES)

demo: $(BIN)/.installed
	$(BIN)/mltelemetry demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .

test: $(BIN)/.installed servers grafana-schema lint
	$(BIN)/pytest -q

check: lint
	$(BIN)/pytest -q tests/unit

# Mutation testing of the computing core (bench/mutate.py has the modules and their tests; bench/mutation.md the
# scores): before a release, not in `make test` (hours on 2 cores). MODULES= a few of them, TIME_BOX= seconds each,
# SURVIVORS=1 only the surviving mutants again (after adding tests that kill them).
MODULES ?=
TIME_BOX ?=
SURVIVORS ?=
mutate: $(BIN)/.installed servers
	$(BIN)/python -m pip install --quiet -e '.[mutate]'
	nice $(BIN)/python bench/mutate.py $(MODULES) $(if $(TIME_BOX),--time-box $(TIME_BOX)) $(if $(SURVIVORS),--survivors)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache
