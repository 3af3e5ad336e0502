# The two commands a newcomer needs: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= config/maild.toml

.PHONY: run test lint typecheck unit servers servers-stop bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m maild.cli db upgrade --config $(CONFIG)
	@$(PY) -m maild.cli web --config $(CONFIG) & web=$$!; \
	trap 'kill $$web 2>/dev/null' EXIT INT TERM; \
	$(PY) -m maild.cli run --config $(CONFIG) --seed-examples

test: $(STAMP)
	$(VENV)/bin/ruff check maild tests bench
	$(VENV)/bin/mypy
	bash scripts/servers.sh start
	bash scripts/browser.sh
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check maild tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -m 'not servers'

servers:
	bash scripts/servers.sh start

servers-stop:
	bash scripts/servers.sh stop

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	bash scripts/servers.sh start
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
