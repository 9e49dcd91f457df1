# Jobcast: `make run` starts everything, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SOCKETIO_CLIENT_VERSION ?= 4.8.4
UPLOT_VERSION ?= 1.6.32
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup run test lint bench bench-reference browser nginx sentinel vendor screenshots clean

# The runtime packages only (requirements.txt): what `make run` and `honcho start` need.
$(VENV)/.installed-run: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

# Tests, linters and benchmarks on top (requirements-dev.txt): `make test` and the rest.
$(VENV)/.installed-dev: $(VENV)/.installed-run requirements-dev.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The one-time set-up before `honcho start`: the virtualenv, and the secrets
# missing from .env (mode 600, never committed). dev/run.py.
setup: $(VENV)/.installed-run
	$(BIN)/python -m dev.run --setup

# web, worker, cron, webhooks and (without REDIS_URL) the embedded Redis under honcho,
# after the set-up and the checks. The environment wins over .env. dev/run.py.
run: $(VENV)/.installed-run
	$(BIN)/python -m dev.run

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy shared website worker dev bench clients/python/jobcast_client

# The tests mostly wait on real servers, so three pytest-xdist processes (one test file
# each at a time) finish in well under half the time on 2 cores: TEST_PROCS=0 runs them
# in this one process.
TEST_PROCS ?= 3
test: $(VENV)/.installed-dev browser nginx sentinel lint
	$(BIN)/pytest -n $(TEST_PROCS) --dist loadfile

# Full run (under 10 minutes) rewrites docs/benchmarks.md; BENCH_ARGS=--quick for a 2-minute check.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench --write docs/benchmarks.md $(BENCH_ARGS)

# The loaded scenario on the reference run's code (c1da4b8, its own virtualenv under
# var/reference) and on today's, side by side (about 3 minutes, plus a pip install once).
bench-reference: $(VENV)/.installed-dev
	$(BIN)/python -m bench.reference $(BENCH_ARGS)

# Debian's Chromium for the browser tests (root on Debian only; else they skip).
browser:
	@if [ -x "$${CHROMIUM_PATH:-/usr/bin/chromium}" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: browser tests will skip"; \
	else echo "chromium not installed (installing needs root and apt-get): browser tests will skip"; fi

# Debian's nginx for tests/test_nginx.py (root on Debian only; else it skips).
nginx:
	@if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq nginx >/dev/null) \
		|| echo "could not install nginx: the nginx test will skip"; \
	else echo "nginx not installed (installing needs root and apt-get): the nginx test will skip"; fi

# Debian's redis-server and redis-sentinel for tests/test_failover.py (root on Debian
# only; else it skips).
sentinel:
	@if command -v redis-sentinel >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq redis-server redis-sentinel >/dev/null) \
		|| echo "could not install redis-sentinel: the failover test will skip"; \
	else echo "redis-sentinel not installed (installing needs root and apt-get): the failover test will skip"; fi

# Refresh the vendored Socket.IO browser client and uPlot (the dashboard's charts) from the npm registry.
vendor:
	rm -rf var/vendor && mkdir -p var/vendor
	cd var/vendor && npm pack --silent socket.io-client@$(SOCKETIO_CLIENT_VERSION) && tar xzf socket.io-client-*.tgz
	cp var/vendor/package/dist/socket.io.min.js website/static/vendor/socket.io.min.js
	cp var/vendor/package/LICENSE website/static/vendor/socket.io-client.LICENSE
	sed -i -E "s/^\| socket.io.min.js \|(.*)\| [^|]+ \| [0-9a-f]+ \|$$/| socket.io.min.js |\1| $(SOCKETIO_CLIENT_VERSION) | $$(sha256sum website/static/vendor/socket.io.min.js | cut -d' ' -f1) |/" website/static/vendor/README.md
	cd var/vendor && npm pack --silent uplot@$(UPLOT_VERSION) && mkdir -p uplot && tar xzf uplot-*.tgz -C uplot
	cp var/vendor/uplot/package/dist/uPlot.iife.min.js var/vendor/uplot/package/dist/uPlot.min.css website/static/vendor/
	cp var/vendor/uplot/package/LICENSE website/static/vendor/uPlot.LICENSE
	for f in uPlot.iife.min.js uPlot.min.css; do sed -i -E "s/^\| $$f \|(.*)\| [^|]+ \| [0-9a-f]+ \|$$/| $$f |\1| $(UPLOT_VERSION) | $$(sha256sum website/static/vendor/$$f | cut -d' ' -f1) |/" website/static/vendor/README.md; done

# README screenshots (docs/*.png) from the real stack in Debian's Chromium.
screenshots: $(VENV)/.installed-dev browser
	$(BIN)/python -m tests.e2e.screenshots

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
