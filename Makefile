# The two commands: `make run` brings the suite up on this machine, `make test`
# runs every test against real servers. Both start what is missing through
# deploy/stack.sh (MariaDB, RabbitMQ, PostgreSQL, FerretDB, Mailpit, ffmpeg).

SHELL    := /bin/bash
export MP3_RUN_DIR ?= $(CURDIR)/.run
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
SERVICES := $(patsubst cmd/%/main.go,%,$(wildcard cmd/*/main.go))
BINS     := $(addprefix bin/,$(SERVICES))

.PHONY: all build run test unit lint bench load stack-up stack-down k8s-build clean

all: build

build: $(BINS)

bin/%: FORCE
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/$*

FORCE:

## run: the suite in the foreground (Ctrl-C stops all)
run: build
	deploy/run.sh

## test: vet, format check and every test (unit, integration, end to end,
## browser, manifests on a real control plane) with -race. The control plane
## (etcd + kube-apiserver/controller-manager/scheduler, pinned) is built once
## per machine into ~/.cache/mp3converter-k8s (≈12 min cold, instant after).
test: export MP3_NEED_CHROMIUM=1
test: lint stack-up k8s-build
	source $(MP3_RUN_DIR)/env && MP3_STACK=1 MP3_K8S=1 go test -race -count=1 -timeout 30m ./...

k8s-build:
	deploy/k8s/cluster.sh build

## unit: only the tests that need no servers
unit:
	go test -race -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	go vet ./...

## bench: the benchmarks named by the issues, each against a baseline in the same run
bench: stack-up
	source $(MP3_RUN_DIR)/env && MP3_STACK=1 go test -run '^$$' -bench . -benchtime=1x -timeout 60m -v \
		$$(ls -d ./internal/auth ./internal/gateway ./internal/converter 2>/dev/null) | grep -E '^(Benchmark|    |ok|FAIL|---)'

## load: load and soak test of the four binaries with a printed report (not part of test);
## LOAD_USERS (50), LOAD_SOAK (10m) and LOAD_SOAK_EVERY (1s) tune it
load: stack-up
	source $(MP3_RUN_DIR)/env && MP3_STACK=1 MP3_LOAD=1 go test -count=1 -run '^TestLoad$$' -v -timeout 40m ./internal/e2e/

stack-up:
	deploy/stack.sh up

stack-down:
	deploy/stack.sh down

clean:
	rm -rf bin
