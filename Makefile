# `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CORE   := $(VENV)/.installed-core
DEV    := $(VENV)/.installed-dev

.PHONY: install browser demo test test-fast lint bench clean

# Re-installs only when the project's dependency files change, so repeat runs are quick.
# The core install is what `make demo` needs; the dev install adds the test tools and the
# scale-out engines (Ray Serve, Redis, PostgreSQL drivers) that the tests exercise.
$(CORE): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@# torch first, pinned to the CPU build on this disk (see constraints.txt)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e .
	@touch $(CORE)

$(DEV): $(CORE)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,scale]'
	@touch $(DEV)

install: $(DEV)

demo: $(CORE)
	$(VENV)/bin/shelfops demo

# The dashboard test drives Debian's chromium through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
	  (apt-get install -y -q chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)); } \
	  || echo "chromium not installed: the dashboard browser test will fail"

# Everything, slow tests included (CI runs this).
test: install browser
	$(PY) -m pytest -m 'slow or not slow'

# The fast loop: skips tests marked slow.
test-fast: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check shelfops tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
