# Globscope: `make demo` runs the whole pipeline on the embedded default, `make test` the tests.
PY := .venv/bin/python
OUT ?= runs/demo

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m globscope demo --out $(OUT)

test: setup lint
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) benchmarks/topology_speed.py

clean:
	rm -rf runs .pytest_cache
