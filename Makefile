# Everything installs into ./.venv with uv; uv itself is bootstrapped into ./.tools when absent.
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never

.PHONY: install run test bench clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

install: $(UV)
	$(UV) sync --locked --python $(PYTHON)

run: install
	$(UV) run --no-sync crm serve

test: install
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync pytest

bench: install
	$(UV) run --no-sync python bench/targets.py

clean:
	rm -rf .venv .tools var
