# The two commands: `make run` brings the suite up on this machine, `make test`
# runs every test against real servers. Both start what is missing through
# deploy/stack.sh (MariaDB, RabbitMQ, PostgreSQL, FerretDB, Mailpit, ffmpeg).

SHELL    := /bin/bash
export MP3_RUN_DIR ?= $(CURDIR)/.run
# kubectl: the machine's, else the one deploy/k8s/cluster.sh builds beside the control plane.
export PATH := $(PATH):$(or $(MP3_K8S_CACHE),$(HOME)/.cache/mp3converter-k8s/v1.37.2)/bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
SERVICES := $(patsubst cmd/%/main.go,%,$(wildcard cmd/*/main.go))
BINS     := $(addprefix bin/,$(SERVICES))

.PHONY: all build run test unit lint bench load stack-up stack-down k8s-build images k8s-up k8s-env k8s-down \
	minikube-deploy minikube-down clean

all: build

build: $(BINS)

bin/%: FORCE
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/$*

FORCE:

## run: the suite in the foreground (Ctrl-C stops all)
run: build
	deploy/run.sh

## test: vet, format check and every test (unit, integration, end to end,
## browser, manifests on a real control plane, the suite on a real local node)
## with -race. The control plane, the node's parts and the images' bases are
## built once per machine into ~/.cache/mp3converter-k8s; before the tests the
## suite is deployed on the node (deploy/k8s/up.sh) unless make k8s-up left one
## running, and removed after them.
test: export MP3_NEED_CHROMIUM=1
test: lint stack-up k8s-build
	@started=; if ! deploy/k8s/up.sh env >/dev/null 2>&1; then \
		echo "deploying the suite on the local node for TestRealNode (deploy/k8s/up.sh)"; \
		VERSION=$(VERSION) deploy/k8s/up.sh up >/dev/null && started=1 || exit 1; fi; \
	source $(MP3_RUN_DIR)/env && MP3_STACK=1 MP3_K8S=1 go test -race -count=1 -timeout 30m ./...; rc=$$?; \
	if [ -n "$$started" ]; then deploy/k8s/up.sh down >/dev/null; fi; exit $$rc

k8s-build:
	deploy/k8s/cluster.sh build
	deploy/k8s/node.sh build

## images: the four images from the Dockerfiles, tagged $(VERSION): docker build
## where a Docker engine answers, else deploy/k8s/images.sh (buildah, with the
## Dockerfiles' bases made here and served by a local registry)
images:
	@if docker info >/dev/null 2>&1; then \
		for s in $(SERVICES); do docker build -f Dockerfile.$$s --build-arg VERSION=$(VERSION) -t mp3converter/$$s:$(VERSION) . || exit 1; done; \
	else VERSION=$(VERSION) deploy/k8s/images.sh build; fi

## k8s-up: the suite on a real local Kubernetes node (images, control plane,
## containerd + kubelet + kube-proxy + CoreDNS), as users deploy it; prints the
## addresses on its last lines and leaves it running. k8s-down removes it.
k8s-up: k8s-build
	VERSION=$(VERSION) deploy/k8s/up.sh up

k8s-env:
	@deploy/k8s/up.sh exports

k8s-down:
	deploy/k8s/up.sh down

## minikube-deploy: build the images into minikube and apply manifests/ there
minikube-deploy:
	@command -v minikube >/dev/null || { echo "minikube is not installed"; exit 1; }
	for s in $(SERVICES); do minikube image build -f Dockerfile.$$s --build-opt=build-arg=VERSION=$(VERSION) \
		-t mp3converter/$$s:$(VERSION) . || exit 1; done
	o=$$(mktemp -d) && printf 'resources: [%s]\nimages:\n' "$$(realpath --relative-to=$$o manifests)" >$$o/kustomization.yaml && \
		for s in $(SERVICES); do printf '  - {name: mp3converter/%s, newTag: "%s"}\n' $$s '$(VERSION)' >>$$o/kustomization.yaml; done && \
		kubectl apply -k $$o && rm -rf $$o
	for d in auth gateway converter notification; do kubectl rollout status deployment/$$d --timeout=300s || exit 1; done

minikube-down:
	kubectl delete -k manifests/ --ignore-not-found

## unit: only the tests that need no servers
unit:
	go test -race -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	go vet ./...

## bench: the benchmarks named by the issues, each against a baseline in the same run
bench: stack-up
	source $(MP3_RUN_DIR)/env && MP3_STACK=1 go test -run '^$$' -bench . -benchtime=1x -timeout 60m -v \
		$$(ls -d ./internal/auth ./internal/gateway ./internal/converter ./internal/e2e 2>/dev/null) | grep -E '^(Benchmark|    |ok|FAIL|---)'

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
