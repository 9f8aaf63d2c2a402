#!/usr/bin/env bash
# The suite on a real Kubernetes node on this machine, deployed as a user
# deploys it: the four images built from the Dockerfiles (images.sh), the
# control plane (cluster.sh) with a real node (node.sh), then
# `kubectl apply -k` of manifests/ with the host-databases component, pointed
# at this machine's MariaDB, RabbitMQ, FerretDB and Mailpit (deploy/stack.sh).
# The in-cluster MySQL, MongoDB and RabbitMQ StatefulSets are left out: their
# official images cannot be pulled here (they are checked by apply on the
# control plane in make test).
#
#   deploy/k8s/up.sh up     start it all, wait for every rollout on the pods'
#                           readiness probes, print the addresses (last lines)
#   deploy/k8s/up.sh env    print the addresses again (exports: as shell exports)
#   deploy/k8s/up.sh down   remove what `up` made: the node, the control plane,
#                           the registry, and the suite's databases and queues
#
# Environment: VERSION (git describe), MP3_K8S_RUN (${TMPDIR:-/tmp}/mp3converter-k8s-node).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export MP3_K8S_RUN="${MP3_K8S_RUN:-${TMPDIR:-/tmp}/mp3converter-k8s-node}"
RUN=$MP3_K8S_RUN
export VERSION="${VERSION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev)}"
NS=mp3converter
export PATH="$PATH:${MP3_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mp3converter-k8s/v1.37.2}/bin" # kubectl (cluster.sh)
NODE_PORT=30080 # the gateway's NodePort
# The suite's own names on the shared servers, apart from `make run`'s.
DB=mp3k8s_auth VIDEOS_DB=k8s_videos MP3S_DB=k8s_mp3s VIDEO_QUEUE=k8s_video MP3_QUEUE=k8s_mp3
REGISTRY=127.0.0.1:5001
BRIDGE_IP=10.244.0.1 # node.sh's bridge: host.minikube.internal for the pods

log() { printf 'k8s-up: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

stack_env() {
	# shellcheck disable=SC1090
	source "$("$ROOT/deploy/stack.sh" env)"
	FERRETDB_PORT=${MONGODB_URI##*:} FERRETDB_PORT=${FERRETDB_PORT%/}
	RABBITMQ_PORT=${RABBITMQ_URL##*:} RABBITMQ_PORT=${RABBITMQ_PORT%/}
}

mysql_dev() { MYSQL_PWD=$MYSQL_PASSWORD mariadb -h127.0.0.1 -P"$MYSQL_PORT" -u"$MYSQL_USER" "$@"; }

# push_pause: the pods' sandbox image (node.sh's pause program), pushed to
# the registry as the registry.k8s.io/pause the node is configured with.
push_pause() {
	curl -sf "http://$REGISTRY/v2/pause/manifests/3.10" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		-o /dev/null && return
	local ctx="$RUN/pause-image" b=(buildah --root "$RUN/pause-storage" --runroot "$RUN/pause-runroot" --storage-driver vfs)
	mkdir -p "$ctx"
	cp "${MP3_K8S_CACHE:-$HOME/.cache/mp3converter-k8s/v1.37.2}/node-bin/pause" "$ctx/pause"
	printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
	"${b[@]}" bud -q -t localhost/pause:3.10 "$ctx" >/dev/null
	"${b[@]}" push -q --tls-verify=false localhost/pause:3.10 "docker://$REGISTRY/pause:3.10"
}

# write_overlay: manifests/ + host-databases, aimed at this machine's servers.
write_overlay() {
	local o="$RUN/overlay" jwt
	mkdir -p "$o"
	jwt=$(cat "$RUN/jwt-secret" 2>/dev/null) || { jwt=$(head -c 32 /dev/urandom | base64 | tr -d '/+='); echo "$jwt" >"$RUN/jwt-secret"; }
	local rabbit="amqp://guest:guest@host.minikube.internal:$RABBITMQ_PORT/"
	local mongo="mongodb://host.minikube.internal:$FERRETDB_PORT/"
	local public="http://$(node_ip):$NODE_PORT"
	cat >"$o/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $NS
resources:
  - namespace.yaml
  - $(realpath --relative-to="$o" "$ROOT/manifests")
components:
  - $(realpath --relative-to="$o" "$ROOT/manifests/components/host-databases")
images:
YAML
	local s
	for s in auth gateway converter notification; do
		printf '  - name: mp3converter/%s\n    newTag: "%s"\n' "$s" "$VERSION" >>"$o/kustomization.yaml"
	done
	cat >>"$o/kustomization.yaml" <<YAML
patches:
  - path: local.yaml
  # RabbitMQ's image cannot be pulled here: the host's broker serves instead.
  - patch: '{"\$patch": "delete", "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "rabbitmq"}}'
  - patch: '{"\$patch": "delete", "apiVersion": "v1", "kind": "Service", "metadata": {"name": "rabbitmq"}}'
  # The gateway on a fixed NodePort of this machine's address.
  - target: {kind: Service, name: gateway}
    patch: '[{"op": "replace", "path": "/spec/type", "value": "NodePort"},
      {"op": "add", "path": "/spec/ports/0/nodePort", "value": $NODE_PORT}]'
  # Two replicas each fit the node's two CPUs (4 converters ask for 2).
  - target: {kind: Deployment}
    patch: '[{"op": "replace", "path": "/spec/replicas", "value": 2}]'
YAML
	echo "apiVersion: v1
kind: Namespace
metadata: {name: $NS}" >"$o/namespace.yaml"
	cat >"$o/local.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: auth-configmap}
data: {MYSQL_PORT: "$MYSQL_PORT", MYSQL_USER: "$MYSQL_USER", MYSQL_DB: "$DB"}
---
apiVersion: v1
kind: Secret
metadata: {name: auth-secret}
stringData: {JWT_SECRET: "$jwt", MYSQL_PASSWORD: "$MYSQL_PASSWORD"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: gateway-configmap}
data: {MONGODB_URI: "$mongo", MONGODB_VIDEOS_DB: $VIDEOS_DB, MONGODB_MP3S_DB: $MP3S_DB, VIDEO_QUEUE: $VIDEO_QUEUE,
  PUBLIC_URL: "$public"}
---
apiVersion: v1
kind: Secret
metadata: {name: gateway-secret}
stringData: {RABBITMQ_URL: "$rabbit"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: converter-configmap}
data: {MONGODB_URI: "$mongo", MONGODB_VIDEOS_DB: $VIDEOS_DB, MONGODB_MP3S_DB: $MP3S_DB, VIDEO_QUEUE: $VIDEO_QUEUE,
  MP3_QUEUE: $MP3_QUEUE}
---
apiVersion: v1
kind: Secret
metadata: {name: converter-secret}
stringData: {RABBITMQ_URL: "$rabbit"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: notification-configmap}
data: {MONGODB_URI: "$mongo", MONGODB_VIDEOS_DB: $VIDEOS_DB, MONGODB_MP3S_DB: $MP3S_DB, MP3_QUEUE: $MP3_QUEUE,
  SMTP_HOST: host.minikube.internal, SMTP_PORT: "$SMTP_PORT", SMTP_TLS: none, PUBLIC_URL: "$public",
  MAIL_FROM: "MP3 Converter <mp3converter@example.com>"}
---
# Mailpit on plain SMTP: no credentials (they are refused without TLS).
apiVersion: v1
kind: Secret
metadata: {name: notification-secret}
stringData: {RABBITMQ_URL: "$rabbit", GMAIL_ADDRESS: "", GMAIL_PASSWORD: ""}
YAML
}

node_ip() { ip -4 route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1; }

cmd_env() {
	stack_env
	export KUBECONFIG="$RUN/kubeconfig"
	local auth
	auth=$(kubectl -n "$NS" get service auth -o jsonpath='{.spec.clusterIP}:{.spec.ports[0].port}') ||
		die "no suite deployed (run: make k8s-up)"
	cat <<ENV
KUBECONFIG=$KUBECONFIG
MP3_NODE_DIR=$RUN/node
MONGODB_VIDEOS_DB=$VIDEOS_DB
MONGODB_MP3S_DB=$MP3S_DB
GATEWAY_URL=http://$(node_ip):$NODE_PORT
AUTH_URL=http://$auth
MAILPIT_API=$MAILPIT_URL/api/v1
MONGODB_URI=$MONGODB_URI
RABBITMQ_URL=$RABBITMQ_URL
MYSQL_DSN=$MYSQL_USER:$MYSQL_PASSWORD@tcp(127.0.0.1:$MYSQL_PORT)/$DB
JWT_SECRET=$(cat "$RUN/jwt-secret")
VIDEO_QUEUE=$VIDEO_QUEUE
MP3_QUEUE=$MP3_QUEUE
ENV
}

cmd_up() {
	local t0=$SECONDS t
	"$ROOT/deploy/stack.sh" up >&2
	stack_env
	t=$SECONDS
	"$HERE/images.sh" build >&2
	log "images built in $((SECONDS - t))s"
	"$HERE/images.sh" registry-up >&2
	push_pause
	[[ -f "$RUN/env" ]] || MP3_K8S_FAKE_NODE=0 "$HERE/cluster.sh" up >&2
	export KUBECONFIG="$RUN/kubeconfig"
	if [[ ! -d "$RUN/node/pids" ]]; then
		t=$SECONDS
		MP3_NODE_REGISTRY=$REGISTRY MP3_NODE_FORWARD="$MYSQL_PORT $RABBITMQ_PORT $FERRETDB_PORT $SMTP_PORT" \
			"$HERE/node.sh" up >&2
		log "node up in $((SECONDS - t))s"
	fi
	mysql_dev -e "CREATE DATABASE IF NOT EXISTS \`$DB\`"
	write_overlay
	kubectl apply -k "$RUN/overlay" >&2
	t=$SECONDS
	local d
	for d in auth gateway converter notification; do
		kubectl -n "$NS" rollout status "deployment/$d" --timeout=300s >&2 ||
			{ kubectl -n "$NS" get pods -o wide >&2; die "deployment/$d did not become ready"; }
	done
	log "rollouts done in $((SECONDS - t))s; the suite is up in $((SECONDS - t0))s (make k8s-down removes it)"
	cmd_env
}

cmd_down() {
	if [[ -f "$RUN/env" ]]; then
		"$HERE/node.sh" down >&2 || true
		"$HERE/cluster.sh" down >&2 || true
	fi
	"$HERE/images.sh" registry-down >&2 || true
	if "$ROOT/deploy/stack.sh" env >/dev/null 2>&1; then
		stack_env
		mysql_dev -e "DROP DATABASE IF EXISTS \`$DB\`" || true
		/usr/bin/python3 -E -s - "$MONGODB_URI" "$RABBITMQ_URL" <<PY || true
import sys, pika, pymongo
m = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000)
for db in ("$VIDEOS_DB", "$MP3S_DB"):
    m.drop_database(db)
ch = pika.BlockingConnection(pika.URLParameters(sys.argv[2])).channel()
for q in ("$VIDEO_QUEUE", "$VIDEO_QUEUE.dead", "$MP3_QUEUE", "$MP3_QUEUE.dead"):
    ch.queue_delete(q)
PY
	fi
	rm -rf "$RUN"
	log "removed"
}

case "${1:-}" in
up) cmd_up ;;
env) cmd_env ;;
exports) cmd_env | while IFS='=' read -r k v; do printf 'export %s=%q\n' "$k" "$v"; done ;;
down) cmd_down ;;
*) die "usage: $0 up|env|exports|down" ;;
esac
