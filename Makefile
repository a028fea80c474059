# Aidants — `make help` lists the targets.
GO      ?= go
DATA    ?= ./data
LISTEN  ?= 127.0.0.1:8080
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.DEFAULT_GOAL := help
.PHONY: help run test lint build bench screens

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: ## start the service in development mode on http://127.0.0.1:8080 (data in ./data)
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/aidants serve --dev --data $(DATA) --listen $(LISTEN)

test: ## run every test with the race detector (SQLite, PostgreSQL, Chromium)
	$(GO) test -race -count=1 -timeout 20m ./...

lint: ## go vet and gofmt
	$(GO) vet ./...
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

build: ## build bin/aidants with its version
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/aidants ./cmd/aidants

screens: ## screenshots of every page at 320 and 1280 px into docs/screens (needs Chromium)
	AIDANTS_SCREENS=$(CURDIR)/docs/screens $(GO) test -count=1 -timeout 15m -run '^TestScreens$$' ./cmd/aidants

bench: ## run the benchmarks and write docs/BENCHMARKS.md
	$(GO) run ./cmd/aidants-bench -out docs/BENCHMARKS.md
