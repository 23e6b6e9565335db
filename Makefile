# One entry point for humans and CI.  `make setup` is idempotent: it installs the Debian tools the
# project drives (borgbackup, hcloud-cli, openssh, PostgreSQL 15, PgBouncer) when missing and a project venv.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CODE := opsconsole console actions screens lab watch
APT_PACKAGES := borgbackup hcloud-cli openssh-client openssh-server postgresql-15 postgresql-client-15 pgbouncer

.PHONY: setup system-packages venv lab test unit e2e lint types imports check clean bench

setup: system-packages venv

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v kubectl >/dev/null || { echo "kubectl (1.27 or newer) is required; Debian's kubernetes-client is too old"; exit 1; }

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lab: setup
	$(VENV)/bin/opsconsole lab up
	$(VENV)/bin/opsconsole --lab

test: unit e2e

unit: setup
	$(PY) -m pytest tests/unit -q

e2e: setup
	$(PY) -m pytest --ignore=tests/unit -n 2 --dist loadfile --durations=25

lint: venv
	$(VENV)/bin/ruff check $(CODE) tests bench
	$(VENV)/bin/ruff format --check $(CODE) tests bench

types: venv
	$(VENV)/bin/mypy $(CODE)

imports: venv
	$(VENV)/bin/lint-imports

check: setup lint types imports test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

bench: setup
	$(PY) -m bench
