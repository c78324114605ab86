# Globscope: `make demo` runs the whole pipeline on the embedded default, `make test` the tests.
PY := .venv/bin/python
OUT ?= runs/demo

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m globscope demo --out $(OUT)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/topology_speed.py

clean:
	rm -rf runs .pytest_cache
