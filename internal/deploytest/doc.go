// Package deploytest holds no code, only tests over what deploys the suite:
// the Dockerfiles (parsed with BuildKit's own parser) and the Kubernetes
// manifests (the kustomization rendered in Go, cross-checked with `kubectl
// kustomize` where kubectl is installed). They need no server and no Docker
// engine: they check what can be checked statically, such as that every
// ConfigMap and Secret reference resolves, that every variable a binary
// requires is provided, that ports and probes agree with what the binaries
// serve, and that every pod is hardened.
package deploytest
