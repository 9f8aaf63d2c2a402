#!/usr/bin/env bash
# A throwaway Kubernetes control plane on loopback, built from pinned Go
# modules (no Docker, no downloads of prebuilt binaries): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, plus a fake kubelet that registers
# one Node and reports every pod bound to it Running and Ready.
#
#   deploy/k8s/cluster.sh build   build the binaries into the cache (once per machine)
#   deploy/k8s/cluster.sh up      build if needed, start everything, write a kubeconfig
#   deploy/k8s/cluster.sh down    stop what `up` started and remove the run dir
#   deploy/k8s/cluster.sh env     print KUBECONFIG=... for the running cluster
#
# Environment:
#   MP3_K8S_CACHE  where binaries are built (default ~/.cache/mp3converter-k8s/v1.37.2)
#   MP3_K8S_RUN    run dir: certs, data, logs, pids, kubeconfig
#                  (default ${TMPDIR:-/tmp}/mp3converter-k8s-run)
#   MP3_K8S_KEEP=1 `down` keeps the run dir (logs) instead of removing it
#   MP3_K8S_FAKE_NODE=0  `up` starts no fake kubelet: a real node joins
#                  instead (deploy/k8s/node.sh, which uses the CA in pki/)
#
# The first build takes about 10-15 minutes on 2 cores; later ones are skipped.
set -euo pipefail

K8S_VERSION=v1.37.2 # k8s.io/kubernetes; see go.mod beside this file
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${MP3_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mp3converter-k8s/$K8S_VERSION}"
RUN="${MP3_K8S_RUN:-${TMPDIR:-/tmp}/mp3converter-k8s-run}"
BIN="$CACHE/bin"
export GOWORK=off GOFLAGS="${GOFLAGS:-} -buildvcs=false"
# kubectl: the machine's if it has one, else the one built beside the control plane.
export PATH="$PATH:$BIN"

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# stamp identifies the sources of the cached binaries: a changed go.mod,
# go.sum or main package rebuilds them.
stamp() {
	cat "$HERE/go.mod" "$HERE/go.sum" "$HERE"/etcd/*.go "$HERE"/fakekubelet/*.go | sha256sum | cut -d' ' -f1
}

# version_ldflags: the version the binaries report (a module build has none).
version_ldflags() {
	local v=k8s.io/component-base/version minor=${K8S_VERSION#v1.}
	echo "-X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=${minor%%.*} -X $v.gitTreeState=clean"
}

built() {
	[[ -f "$CACHE/stamp" && "$(cat "$CACHE/stamp")" == "$(stamp)" ]] || return 1
	local b
	for b in etcd kube-apiserver kube-controller-manager kube-scheduler fakekubelet kubectl; do
		[[ -x "$BIN/$b" ]] || return 1
	done
}

cmd_build() {
	if built; then
		log "binaries present in $BIN (skipping build)"
		return 0
	fi
	command -v go >/dev/null || die "go is not installed"
	mkdir -p "$CACHE"
	local tmp="$CACHE/bin.tmp.$$" start=$SECONDS
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log "building etcd, kube-apiserver, kube-controller-manager, kube-scheduler ($K8S_VERSION) and fakekubelet into $BIN (first time: 10-15 min)"
	(cd "$HERE" && go build -ldflags "$(version_ldflags)" -o "$tmp/" ./etcd ./fakekubelet \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kubectl) || { rm -rf "$tmp"; die "build failed"; }
	rm -rf "$BIN"
	mv "$tmp" "$BIN"
	stamp >"$CACHE/stamp"
	log "built in $((SECONDS - start))s"
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on, below
# the kernel's ephemeral range (32768 up): a port that an outgoing
# connection holds (many, with a real node running) cannot be bound either,
# and a listen check does not see it.
free_port() {
	local p lo
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % (lo - 20000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			if ! grep -qx "$p" "$RUN/ports" 2>/dev/null; then
				echo "$p" >>"$RUN/ports"
				echo "$p"
				return 0
			fi
		fi
	done
	die "no free port found"
}

gen_certs() {
	local d="$RUN/pki"
	mkdir -p "$d"
	(
		cd "$d"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
			-subj "/CN=mp3converter-test-ca" 2>/dev/null
		# name CN O [SANs]
		client_or_server() {
			local name=$1 subj=$2 ext=$3
			openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
			printf '%s\n' "$ext" >"$name.ext"
			openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
				-out "$name.crt" -days 2 -extfile "$name.ext" 2>/dev/null
			rm -f "$name.csr" "$name.ext"
		}
		client_or_server apiserver "/CN=kube-apiserver" \
			"basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
		local client="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
		client_or_server admin "/O=system:masters/CN=mp3converter-admin" "$client"
		client_or_server controller-manager "/CN=system:kube-controller-manager" "$client"
		client_or_server scheduler "/CN=system:kube-scheduler" "$client"
		# The fake kubelet registers a Node and writes pod status; it is
		# given admin rights rather than a node identity (no NodeRestriction
		# to satisfy in a test cluster).
		client_or_server fakekubelet "/O=system:masters/CN=fakekubelet" "$client"
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
	)
}

kubeconfig() { # name file
	cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mp3converter-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $RUN/pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $RUN/pki/$1.crt
    client-key: $RUN/pki/$1.key
contexts:
- name: mp3converter-test
  context:
    cluster: mp3converter-test
    user: $1
current-context: mp3converter-test
EOF
}

start() { # name args...
	local name=$1
	shift
	setsid "$@" >"$RUN/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN/pids/$name"
}

alive_or_die() { # name
	local pid
	pid=$(cat "$RUN/pids/$1")
	if ! kill -0 "$pid" 2>/dev/null; then
		log "$1 exited; last lines of $RUN/logs/$1.log:"
		tail -n 30 "$RUN/logs/$1.log" >&2 || true
		die "$1 failed to start"
	fi
}

wait_for() { # what timeout-seconds name-of-process-to-check command...
	local what=$1 timeout=$2 proc=$3 deadline=$((SECONDS + $2))
	shift 3
	until "$@" >/dev/null 2>&1; do
		alive_or_die "$proc"
		((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
		sleep 0.5
	done
}

cmd_up() {
	command -v kubectl >/dev/null || die "kubectl is not installed"
	command -v openssl >/dev/null || die "openssl is not installed"
	cmd_build
	if [[ -f "$RUN/env" ]]; then
		die "$RUN already holds a cluster: run '$0 down' first"
	fi
	rm -rf "$RUN"
	mkdir -p "$RUN/logs" "$RUN/pids" "$RUN/etcd"
	local start_s=$SECONDS
	gen_certs
	local ETCD_PORT PEER_PORT
	ETCD_PORT=$(free_port)
	PEER_PORT=$(free_port)
	API_PORT=$(free_port)
	KUBECONFIG="$RUN/kubeconfig"
	kubeconfig admin "$KUBECONFIG"
	kubeconfig controller-manager "$RUN/controller-manager.kubeconfig"
	kubeconfig scheduler "$RUN/scheduler.kubeconfig"
	kubeconfig fakekubelet "$RUN/fakekubelet.kubeconfig"
	cat >"$RUN/env" <<EOF
KUBECONFIG=$KUBECONFIG
MP3_K8S_API=https://127.0.0.1:$API_PORT
MP3_K8S_ETCD=http://127.0.0.1:$ETCD_PORT
EOF

	start etcd "$BIN/etcd" --name=mp3 --data-dir="$RUN/etcd" \
		--listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
		--advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls="http://127.0.0.1:$PEER_PORT" \
		--initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
		--initial-cluster="mp3=http://127.0.0.1:$PEER_PORT" \
		--unsafe-no-fsync --log-level=warn
	wait_for "etcd" 60 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"

	# --endpoint-reconciler-type=none: the apiserver otherwise tries to
	# publish its loopback address as the kubernetes Service's endpoint,
	# which is refused.
	start kube-apiserver "$BIN/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
		--cert-dir="$RUN/apiserver" \
		--tls-cert-file="$RUN/pki/apiserver.crt" --tls-private-key-file="$RUN/pki/apiserver.key" \
		--client-ca-file="$RUN/pki/ca.crt" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$RUN/pki/sa.pub" \
		--service-account-signing-key-file="$RUN/pki/sa.key" \
		--service-cluster-ip-range=10.0.0.0/24 \
		--authorization-mode=RBAC \
		--kubelet-client-certificate="$RUN/pki/admin.crt" --kubelet-client-key="$RUN/pki/admin.key" \
		--kubelet-preferred-address-types=InternalIP \
		--endpoint-reconciler-type=none
	wait_for "kube-apiserver /readyz" 120 kube-apiserver kubectl --kubeconfig="$KUBECONFIG" get --raw /readyz

	# --root-ca-file is the CA (what pods get as ca.crt to verify the
	# apiserver), not the apiserver's serving certificate.
	start kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig="$RUN/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$RUN/controller-manager.kubeconfig" \
		--authorization-kubeconfig="$RUN/controller-manager.kubeconfig" \
		--secure-port=0 --leader-elect=false \
		--use-service-account-credentials=true \
		--service-account-private-key-file="$RUN/pki/sa.key" \
		--root-ca-file="$RUN/pki/ca.crt" \
		--cluster-signing-cert-file="$RUN/pki/ca.crt" --cluster-signing-key-file="$RUN/pki/ca.key" \
		--node-monitor-grace-period=60s
	start kube-scheduler "$BIN/kube-scheduler" \
		--kubeconfig="$RUN/scheduler.kubeconfig" \
		--authentication-kubeconfig="$RUN/scheduler.kubeconfig" \
		--authorization-kubeconfig="$RUN/scheduler.kubeconfig" \
		--secure-port=0 --leader-elect=false
	if [[ "${MP3_K8S_FAKE_NODE:-1}" != 0 ]]; then
		start fakekubelet "$BIN/fakekubelet" --kubeconfig="$RUN/fakekubelet.kubeconfig" --node-name=fake-node
	fi

	# Ready when the default ServiceAccount exists (controller-manager's
	# token and service-account controllers run) and the node is Ready.
	wait_for "the default ServiceAccount" 120 kube-controller-manager \
		kubectl --kubeconfig="$KUBECONFIG" -n default get serviceaccount default
	alive_or_die kube-scheduler
	if [[ "${MP3_K8S_FAKE_NODE:-1}" != 0 ]]; then
		wait_for "node fake-node Ready" 60 fakekubelet \
			kubectl --kubeconfig="$KUBECONFIG" wait --for=condition=Ready node/fake-node --timeout=1s
		alive_or_die kube-scheduler
	fi
	log "cluster up in $((SECONDS - start_s))s; KUBECONFIG=$KUBECONFIG (logs in $RUN/logs)"
	echo "KUBECONFIG=$KUBECONFIG"
}

cmd_down() {
	[[ -d "$RUN/pids" ]] || { log "nothing running in $RUN"; return 0; }
	local name pid
	for name in fakekubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
		[[ -f "$RUN/pids/$name" ]] || continue
		pid=$(cat "$RUN/pids/$name")
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		rm -f "$RUN/pids/$name"
	done
	if [[ "${MP3_K8S_KEEP:-}" == 1 ]]; then
		rm -f "$RUN/env"
		log "stopped; logs kept in $RUN/logs"
	else
		rm -rf "$RUN"
		log "stopped"
	fi
}

cmd_env() {
	[[ -f "$RUN/env" ]] || die "no cluster in $RUN"
	cat "$RUN/env"
}

case "${1:-}" in
build) cmd_build ;;
built) built ;;
up) cmd_up ;;
down) cmd_down ;;
env) cmd_env ;;
*)
	echo "usage: $0 build|up|down|env" >&2
	exit 2
	;;
esac
