# Postline — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.synced

.PHONY: run test bench install clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(UV): $(VENV)/bin/python
	$(VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(VENV)/bin/python -m ensurepip --upgrade >/dev/null
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"

# Installs exactly what uv.lock pins (runtime + test extras) into .venv; --inexact keeps
# uv itself, which is not in the lock, so the next make does not reinstall everything.
$(STAMP): pyproject.toml uv.lock $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --inexact --extra test --python $(VENV)/bin/python
	touch $(STAMP)

install: $(STAMP)

## make run: everything in one process on embedded defaults (SQLite log, chDB, dev inbox).
run: install
	$(VENV)/bin/postline all

## make test: the whole suite, real parts included (tansu broker, chDB, SMTP sinks, DNS).
test: install
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

## make bench: throughput/latency benchmarks; results in docs/benchmarks.md.
bench: install
	$(VENV)/bin/python -m tests.bench

clean:
	rm -rf $(VENV) .postline
