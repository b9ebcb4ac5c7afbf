# ghostd — run `make help` for the targets.
SHELL      := /bin/bash
GO         ?= go
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION   ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS    := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
BIN        := bin/ghostd
# Debian packages the tests need (installed by `make deps` when missing).
TEST_DEBS  := iproute2 nftables conntrack prometheus systemd-container debootstrap ethtool postgresql redis-server nginx
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Feature makefiles (packaging, benchmarks, ...) add their own targets here.
-include mk/*.mk

.PHONY: help build run scan test test-short deps bench fuzz lint tidy-check clean

help: ## Show this help.
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/ghostd with the version stamped in.
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ghostd

run: build ## Run the daemon on defaults (needs root for every namespace).
	./$(BIN) run

scan: build ## One scan of every namespace, printed as a table.
	./$(BIN) scan

deps: ## Install the Debian packages the tests need (as root, only when missing).
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: missing$$missing (run as root to install)"; exit 0; fi; \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: deps ## Run every test with -race (privileged ones too, as root) and compile the tests for a non-Linux GOOS.
	$(GO) test -race -count=1 -timeout 30m ./...
	GOOS=freebsd $(GO) test -count=1 -exec /bin/true ./... >/dev/null
	@echo "non-Linux (freebsd) test build: ok"
	GOOS=linux GOARCH=s390x $(GO) build -o /dev/null ./cmd/ghostd
	GOOS=linux GOARCH=arm64 $(GO) build -o /dev/null ./cmd/ghostd

test-short: ## Unprivileged, quick tests only.
	$(GO) test -short -count=1 ./...

bench: build ## Go benchmarks plus the comparison scripts (ratios against baselines from the same run).
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./... | tee bench.out
	@for s in scripts/bench-*.sh; do [ -x "$$s" ] && "$$s"; done; true

fuzz: ## Fuzz every target for FUZZTIME each (default 30s); report all, fail if any failed.
	GO=$(GO) scripts/fuzz.sh

lint: ## gofmt, go vet and staticcheck.
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt: $$out"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

tidy-check: ## Fail when go.mod or go.sum is not tidy.
	$(GO) mod tidy -diff

clean: ## Remove build output.
	rm -rf bin bench.out dist
