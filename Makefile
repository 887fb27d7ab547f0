# The README's two commands: `make demo` and `make test`.
# Each bootstraps what it needs on a machine with only python3 (>= 3.11) and make:
# uv (into .tools/, never into the system Python), then the locked environment.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
export UV_PROJECT_ENVIRONMENT ?= $(CURDIR)/.venv
# Trust the platform's certificate store too (corporate proxies re-sign TLS).
export UV_SYSTEM_CERTS ?= 1
export UV_NATIVE_TLS ?= 1

.PHONY: demo test lint typecheck bench env
env: $(UV)
	@$(UV) sync --locked --quiet

$(CURDIR)/.tools/bin/uv:
	@$(PYTHON) -c 'import sys; sys.exit("claimsync needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@echo "bootstrapping uv into .tools/ (once)"
	@$(PYTHON) -m venv $(CURDIR)/.tools
	@$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check 'uv>=0.13,<1'

demo: env
	@$(UV) run --locked --quiet claimsync demo $(ARGS)

test: env
	@$(UV) run --locked --quiet pytest $(ARGS)

lint: env
	@$(UV) run --locked --quiet ruff check plugins dags tests bench
	@$(UV) run --locked --quiet ruff format --check plugins dags tests bench

typecheck: env
	@$(UV) run --locked --quiet mypy

bench: env
	@$(UV) run --locked --quiet python -m bench.$(NAME) $(ARGS)
