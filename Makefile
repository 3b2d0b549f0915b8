# devpi-credd: `make demo` shows the main job end to end; `make test` runs
# every test (unit, cross-compilation, end-to-end). See README.md.

SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO          ?= go
PYTHON      ?= python3
VENV        ?= $(CURDIR)/.venv
BIN         := bin/devpi-credd
PIP_VERSION := 26.3
VERSION     ?= $(shell packaging/version.sh 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build test unit cross pytest e2e bench fuzz man wheel dist dist-test demo venv deps clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/devpi-credd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/devpi-credd-keyring ./cmd/devpi-credd-keyring

## test: everything CI runs.
test: unit cross pytest e2e dist-test

unit: deps
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/
	$(GO) vet -tags dist ./packaging/disttest/
	$(GO) run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12 -color=false
	$(GO) test -race -count=1 ./...

# devpi-credd runs on developer machines of every kind: keep it building.
cross:
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./...
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./...
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

# The Python keyring backend, against the real binary and a stand-in daemon.
pytest: build venv
	DEVPI_CREDD_BIN=$(CURDIR)/$(BIN) $(VENV)/client/bin/python -m pytest -q -p no:cacheprovider packaging/python/tests

e2e: deps venv
	DEVPI_CREDD_VENV=$(VENV) $(GO) test -race -count=1 -tags e2e -timeout 20m ./e2e/

## deps: system packages the tests run: nginx (in front of devpi-server),
## systemd (systemd-analyze checks the units offline; systemd-socket-activate
## starts the daemon from its socket; systemd-sysusers makes system mode's
## user), tmux (the person's terminal) and gdb (gcore, which the worm tries
## on the daemon), hyperfine (make bench), lintian, rpm and man-db (the .deb
## and .rpm checks).
deps:
	@missing=""; \
	PATH="$$PATH:/usr/sbin" command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	command -v gcore >/dev/null || missing="$$missing gdb"; \
	command -v hyperfine >/dev/null || missing="$$missing hyperfine"; \
	command -v lintian >/dev/null || missing="$$missing lintian"; \
	command -v rpm >/dev/null || missing="$$missing rpm"; \
	command -v man >/dev/null || missing="$$missing man-db"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing:$$missing (sudo apt-get install$$missing)" >&2; exit 1; \
	  fi; \
	fi

## bench: Go benchmarks; devpi-credd beside devpi-client (Python); load on
## the daemon's socket beside a bare Go server on a socket (the ceiling);
## the trusted-publishing exchange beside a bare Go server on TCP.
bench: deps build venv
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./token/ ./daemon/ ./helper/ ./exchange/
	DEVPI_CREDD_VENV=$(VENV) bench/derive.sh $(BIN)
	DEVPI_CREDD_VENV=$(VENV) bench/keyring.sh bin
	bench/daemon.sh $(BIN)
	bench/exchange.sh $(BIN)

## man: man pages for every command, into dist/man (shell completion:
## devpi-credd completion bash|zsh|fish|powershell).
man:
	$(GO) run -tags gendocs ./cmd/devpi-credd man dist/man
	cp packaging/man/devpi-credd-keyring.1 dist/man/  # the lean binary's page (see packaging/dist.sh)

## dist: every artifact of a release into dist/, reproducibly: static
## binaries for linux, darwin and windows, a wheel per platform, .deb and
## .rpm, man pages, completions, SBOMs and SHA256SUMS (packaging/dist.sh).
dist:
	GO=$(GO) PYTHON=$(PYTHON) packaging/dist.sh

## wheel: this machine's wheel alone (make dist makes every platform's):
## the binaries (static) and the keyring backend, as ruff and uv ship
## theirs: 'pip install devpi-credd' then gives pip, uv, twine and keyring
## everything.
wheel:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/wheel-bin/ ./cmd/devpi-credd ./cmd/devpi-credd-keyring
	$(PYTHON) packaging/wheel/build_wheel.py $(VERSION) dist/wheel-bin dist $$($(GO) env GOHOSTOS)/$$($(GO) env GOHOSTARCH)

## fuzz: every parser that reads outside input, FUZZTIME each (seeds run in
## make unit anyway).
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./token/
	$(GO) test -run '^$$' -fuzz '^FuzzParseExpiry$$' -fuzztime $(FUZZTIME) ./token/
	$(GO) test -run '^$$' -fuzz '^FuzzParseCaveat$$' -fuzztime $(FUZZTIME) ./token/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./config/
	$(GO) test -run '^$$' -fuzz '^FuzzServiceURL$$' -fuzztime $(FUZZTIME) ./daemon/
	$(GO) test -run '^$$' -fuzz '^FuzzKeyringArgs$$' -fuzztime $(FUZZTIME) ./helper/
	$(GO) test -run '^$$' -fuzz '^FuzzDaemonAnswer$$' -fuzztime $(FUZZTIME) ./helper/
	$(GO) test -run '^$$' -fuzz '^FuzzExchangeConfig$$' -fuzztime $(FUZZTIME) ./config/
	$(GO) test -run '^$$' -fuzz '^FuzzExchangeClaims$$' -fuzztime $(FUZZTIME) ./config/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRaw$$' -fuzztime $(FUZZTIME) ./exchange/
	$(GO) test -run '^$$' -fuzz '^FuzzWorkflowFile$$' -fuzztime $(FUZZTIME) ./exchange/
	$(GO) test -run '^$$' -fuzz '^FuzzCIConfigFile$$' -fuzztime $(FUZZTIME) ./exchange/
	$(GO) test -run '^$$' -fuzz '^FuzzClientAddr$$' -fuzztime $(FUZZTIME) ./exchange/
	$(GO) test -run '^$$' -fuzz '^FuzzMintTokenBody$$' -fuzztime $(FUZZTIME) ./exchange/
	$(GO) test -run '^$$' -fuzz '^FuzzStringClaims$$' -fuzztime $(FUZZTIME) ./exchange/
	$(GO) test -run '^$$' -fuzz '^FuzzParseURI$$' -fuzztime $(FUZZTIME) ./approval/
	$(GO) test -run '^$$' -fuzz '^FuzzGate$$' -fuzztime $(FUZZTIME) ./approval/

demo: build deps venv
	DEVPI_CREDD_VENV=$(VENV) scripts/demo.sh $(BIN)

## venv: the pinned Python programs the e2e tests and the demo drive:
## server (devpi-server + plugins), client (devpi-client, twine, keyring, uv,
## and our keyring backend), pip25 (a pip that asks keyrings the old way),
## poetry and pdm (with our backend in poetry's, which uses the keyring
## library), tools (pipx), and a wheelhouse of keyring and its
## dependencies for installing devpi-credd's wheels offline.
venv: $(VENV)/server/.installed $(VENV)/client/.installed $(VENV)/pip25/.installed $(VENV)/client/.backend \
	$(VENV)/poetry/.installed $(VENV)/poetry/.backend $(VENV)/pdm/.installed $(VENV)/tools/.installed $(VENV)/wheelhouse/.done

$(VENV)/%/.installed: e2e/requirements-%.txt
	rm -rf $(VENV)/$*
	$(PYTHON) -m venv $(VENV)/$*
	$(VENV)/$*/bin/python -m pip install -q --disable-pip-version-check pip==$(PIP_VERSION)
	$(VENV)/$*/bin/python -m pip install -q --disable-pip-version-check --no-deps -r $<
	$(VENV)/$*/bin/python -m pip check
	touch $@

# Our keyring backend, rebuilt when its sources change.
$(VENV)/%/.backend: $(VENV)/%/.installed $(wildcard packaging/python/pyproject.toml packaging/python/src/*/*.py)
	$(VENV)/$*/bin/python -m pip install -q --disable-pip-version-check --no-deps --force-reinstall ./packaging/python
	touch $@

$(VENV)/wheelhouse/.done: e2e/requirements-keyring.txt $(VENV)/client/.installed
	rm -rf $(VENV)/wheelhouse
	$(VENV)/client/bin/python -m pip download -q --disable-pip-version-check --no-deps -r $< -d $(VENV)/wheelhouse
	touch $@

## dist-test: make dist, then check what it made: wheel tags, contents and
## metadata (twine check); pip install, uv tool install and pipx install of
## the wheel; the .deb with lintian, installed with dpkg -i and removed
## again (as root); the .rpm with rpm -qp; and a second build from a fresh
## clone, byte for byte the same.
dist-test: dist deps venv
	DEVPI_CREDD_VENV=$(VENV) $(GO) test -count=1 -tags dist -timeout 30m ./packaging/disttest/

clean:
	rm -rf bin $(VENV)
