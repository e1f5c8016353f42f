# Postline — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.synced

.PHONY: run test typecheck bench bench-deps install bytecode test-deps screenshots clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(UV): $(VENV)/bin/python
	$(VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(VENV)/bin/python -m ensurepip --upgrade >/dev/null
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"

# Installs exactly what uv.lock pins (runtime + test extras) into .venv; --inexact keeps
# uv itself, which is not in the lock, so the next make does not reinstall everything.
# --compile-bytecode: the packages' .pyc are written once here, so no process compiles them at
# start (with PYTHONDONTWRITEBYTECODE set, every `postline` process would, each time: ~1 s of CPU).
$(STAMP): pyproject.toml uv.lock $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --inexact --compile-bytecode --extra test --python $(VENV)/bin/python
	touch $(STAMP)

# Postline's own modules are imported from the checkout (an editable install): their .pyc too,
# refreshed for what changed since the last run (compileall compares each source's mtime).
bytecode: install
	$(VENV)/bin/python -m compileall -q -j 0 services shared tests >/dev/null

# Browser tests drive Debian's chromium through Playwright (never `playwright install`,
# which downloads a browser build from outside the package registries).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	command -v apt-get >/dev/null || { echo "install chromium (Debian package) for the browser tests" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# The Resend Node SDK tests (tests/sdk) run Debian's node against the npm package pinned in
# tests/sdk/node/package-lock.json, installed into tests/sdk/node/node_modules (git-ignored).
NODE     := $(shell command -v node 2>/dev/null || echo /usr/bin/node)
NPM      := $(shell command -v npm 2>/dev/null || echo /usr/bin/npm)
SDK_NODE := tests/sdk/node/node_modules/.package-lock.json
$(NODE) $(NPM):
	command -v apt-get >/dev/null || { echo "install nodejs and npm (Debian packages) for the SDK tests" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null

$(SDK_NODE): tests/sdk/node/package.json tests/sdk/node/package-lock.json $(NODE) $(NPM)
	cd tests/sdk/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(SDK_NODE)

# The SMTP submission tests drive swaks (Debian package) as a client nobody here wrote.
SWAKS := /usr/bin/swaks
$(SWAKS):
	command -v apt-get >/dev/null || { echo "install swaks (Debian package) for the SMTP submission tests" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq swaks >/dev/null

# The README's Rails and Laravel SMTP settings are driven through the mail gem (what Action Mailer
# delivers with) and Symfony Mailer (Laravel's), Debian packages (tests/data/clients/).
RUBY_MAIL      := /usr/lib/ruby/vendor_ruby/mail.rb
SYMFONY_MAILER := /usr/share/php/Symfony/Component/Mailer/autoload.php
$(RUBY_MAIL):
	command -v apt-get >/dev/null || { echo "install ruby and ruby-mail (Debian packages) for the SMTP submission tests" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ruby ruby-mail >/dev/null
$(SYMFONY_MAILER):
	command -v apt-get >/dev/null || { echo "install php-cli and php-symfony-mailer (Debian packages) for the SMTP submission tests" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq php-cli php-symfony-mailer >/dev/null

install: $(STAMP)

test-deps: install $(CHROMIUM) $(SWAKS) $(SDK_NODE) $(RUBY_MAIL) $(SYMFONY_MAILER)

## make run: everything in one process on embedded defaults (SQLite log, chDB, dev inbox).
run: bytecode
	$(VENV)/bin/postline all

## make test: the type checker ([tool.mypy] in pyproject.toml), then the whole suite, real parts
## included (tansu broker, chDB, SMTP sinks, DNS).
test: test-deps bytecode typecheck
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

typecheck: install
	$(VENV)/bin/mypy

## make screenshots: the browser tests, writing docs/screenshots/*.png (linked from the README).
screenshots: test-deps
	POSTLINE_UPDATE_SCREENSHOTS=1 $(VENV)/bin/python -m pytest -q -p no:cacheprovider -m browser

# The end-to-end bench runs Debian's postfix beside Postline as the bar to beat. Preseeded
# "No configuration": the package writes no main.cf and starts nothing; the bench runs it from
# its own config directory, bound to loopback, and stops it after the run.
POSTFIX := /usr/sbin/postfix
$(POSTFIX):
	@command -v apt-get >/dev/null || { echo "no apt-get: the end-to-end bench runs without its Postfix side" >&2; exit 0; }; \
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null

# ... and Debian's OpenDKIM as that Postfix's signing milter (how Postfix signs DKIM in
# practice). The bench runs its own instance from its own files; the system service the
# package sets up is stopped and disabled where systemd runs it (the bench never uses it).
OPENDKIM := /usr/sbin/opendkim
$(OPENDKIM):
	@command -v apt-get >/dev/null || { echo "no apt-get: the end-to-end bench runs without its OpenDKIM side" >&2; exit 0; }; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opendkim >/dev/null; \
	systemctl disable --now opendkim >/dev/null 2>&1 || true

bench-deps: bytecode $(POSTFIX) $(OPENDKIM)

## make bench: throughput/latency benchmarks; results in docs/benchmarks.md.
bench: bench-deps
	$(VENV)/bin/python -m tests.bench

clean:
	rm -rf $(VENV) .postline
