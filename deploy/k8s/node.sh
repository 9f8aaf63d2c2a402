#!/usr/bin/env bash
# A real Kubernetes node on this machine, joined to the control plane that
# cluster.sh starts: containerd 2 + runc run the pods' containers, the CNI
# bridge plugin gives them addresses on mp3br0 (10.244.0.0/24), kube-proxy
# (iptables) makes the Services, CoreDNS on the host answers their names, and
# the kubelet runs them with their probes. Everything is built from pinned Go
# modules (node/go.mod; kubelet and kube-proxy from ../go.mod) into the cache
# beside the control plane, once per machine.
#
#   deploy/k8s/node.sh build   build containerd, ctr, the runc shim, CoreDNS, pause,
#                              kubelet and kube-proxy into the cache
#   deploy/k8s/node.sh up      build if needed, then join the running control plane
#                              (cluster.sh up with MP3_K8S_FAKE_NODE=0) as node mp3-node
#   deploy/k8s/node.sh down    stop what `up` started: processes, pods' containers,
#                              mounts, the bridge, the iptables rules
#
# The pods reach this machine's own servers (MariaDB, RabbitMQ, FerretDB, Mailpit,
# which listen on 127.0.0.1 only) at host.minikube.internal, the bridge's address
# 10.244.0.1: socat forwards each port there to loopback (see forward_host_ports).
#
# Environment:
#   MP3_K8S_CACHE, MP3_K8S_RUN   as for cluster.sh (the node's state is $MP3_K8S_RUN/node)
#   MP3_NODE_FORWARD             "port ..." of 127.0.0.1 to offer on 10.244.0.1 (up)
#   MP3_NODE_REGISTRY            host:port of the registry holding the images (up;
#                                docker.io and registry.k8s.io are mirrored to it)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION=v1.37.2
CACHE="${MP3_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mp3converter-k8s/$K8S_VERSION}"
RUN="${MP3_K8S_RUN:-${TMPDIR:-/tmp}/mp3converter-k8s-run}"
NODE_BIN="$CACHE/node-bin"
NODE="$RUN/node"
NODE_NAME=mp3-node
BRIDGE=mp3br0 BRIDGE_IP=10.244.0.1 POD_CIDR=10.244.0.0/24
DNS_IP=10.0.0.10 # in cluster.sh's service range 10.0.0.0/24
PAUSE_IMAGE=registry.k8s.io/pause:3.10
export GOWORK=off GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0
export PATH="$PATH:$CACHE/bin" # kubectl, if the machine has none (cluster.sh builds one)

log() { printf 'node.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- build -------------------------------------------------------------------

node_stamp() {
	cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/node/go.mod" "$HERE/node/go.sum" "$HERE"/node/pause/*.go |
		sha256sum | cut -d' ' -f1
}

node_built() {
	[[ -f "$NODE_BIN/stamp" && "$(cat "$NODE_BIN/stamp")" == "$(node_stamp)" ]] || return 1
	local b
	for b in containerd containerd-shim-runc-v2 ctr coredns pause kubelet kube-proxy; do
		[[ -x "$NODE_BIN/$b" ]] || return 1
	done
}

cmd_build() {
	if node_built; then
		log "node binaries present in $NODE_BIN (skipping build)"
		return 0
	fi
	command -v go >/dev/null || die "go is not installed"
	local tmp="$NODE_BIN.tmp.$$" start=$SECONDS
	rm -rf "$tmp" && mkdir -p "$tmp"
	log "building containerd, its runc shim, ctr, CoreDNS and pause (node/go.mod) into $NODE_BIN"
	(cd "$HERE/node" && go build -trimpath -ldflags '-s -w' -tags no_btrfs,no_devmapper,no_zfs -o "$tmp/" \
		github.com/containerd/containerd/v2/cmd/containerd \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
		github.com/containerd/containerd/v2/cmd/ctr \
		github.com/coredns/coredns ./pause) || { rm -rf "$tmp"; die "build failed"; }
	log "building kubelet and kube-proxy ($K8S_VERSION, ../go.mod)"
	local v=k8s.io/component-base/version minor=${K8S_VERSION#v1.}
	# The flags of cluster.sh's build, so that the control plane's compiled
	# packages are reused (a cold machine builds that first).
	(cd "$HERE" && go build -o "$tmp/" \
		-ldflags "-X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=${minor%%.*} -X $v.gitTreeState=clean" \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy) || { rm -rf "$tmp"; die "build failed"; }
	node_stamp >"$tmp/stamp"
	rm -rf "$NODE_BIN" && mv "$tmp" "$NODE_BIN"
	log "node built in $((SECONDS - start))s"
}

# --- up ----------------------------------------------------------------------

# cluster: the control plane's env (KUBECONFIG, MP3_K8S_API) from cluster.sh.
cluster() {
	[[ -f "$RUN/env" ]] || die "no control plane in $RUN: run 'MP3_K8S_FAKE_NODE=0 deploy/k8s/cluster.sh up' first"
	# shellcheck disable=SC1091
	source "$RUN/env"
	export KUBECONFIG
	API_URL=$MP3_K8S_API
}

# node_ip: the address of this machine's default route, which the apiserver
# and NodePorts use.
node_ip() { ip -4 route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1; }

start() { # name cmd...: in the background, in its own session, logging to logs/
	local name=$1
	shift
	setsid "$@" >"$RUN/logs/node-$name.log" 2>&1 </dev/null &
	echo $! >"$NODE/pids/$name"
}

alive() { [[ -f "$NODE/pids/$1" ]] && kill -0 "$(cat "$NODE/pids/$1")" 2>/dev/null; }

wait_for() { # what seconds proc cmd...: poll cmd until it succeeds; fail at once if proc died
	local what=$1 deadline=$((SECONDS + $2)) proc=$3
	shift 3
	until "$@" >/dev/null 2>&1; do
		if [[ -n $proc ]] && ! alive "$proc"; then
			tail -n 30 "$RUN/logs/node-$proc.log" >&2 || true
			die "$proc exited while waiting for $what (log: $RUN/logs/node-$proc.log)"
		fi
		((SECONDS < deadline)) || die "timed out after $2s waiting for $what"
		sleep 0.5
	done
}

# cert NAME SUBJECT EXTENSIONS: a key and certificate signed by the cluster's CA.
cert() {
	local d="$RUN/pki"
	openssl req -newkey rsa:2048 -nodes -keyout "$d/$1.key" -out "$d/$1.csr" -subj "$2" 2>/dev/null
	openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -out "$d/$1.crt" \
		-days 2 -extfile <(printf '%s\n' "$3") 2>/dev/null
	rm -f "$d/$1.csr"
}

kubeconfig() { # name file
	cat >"$2" <<KC
apiVersion: v1
kind: Config
clusters:
- name: mp3converter-test
  cluster: {server: $API_URL, certificate-authority: $RUN/pki/ca.crt}
users:
- name: $1
  user: {client-certificate: $RUN/pki/$1.crt, client-key: $RUN/pki/$1.key}
contexts:
- name: mp3converter-test
  context: {cluster: mp3converter-test, user: $1}
current-context: mp3converter-test
KC
}

# write_configs: certificates (the node's parts get admin rights, like the
# fake kubelet: a one-node test cluster, no NodeRestriction to satisfy) and
# the configuration of every part.
write_configs() {
	local ip=$1 client="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
	cert kubelet "/O=system:masters/CN=system:node:$NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:$ip,IP:127.0.0.1,DNS:$NODE_NAME"
	cert kube-proxy "/O=system:masters/CN=kube-proxy" "$client"
	cert coredns "/O=system:masters/CN=coredns" "$client"
	local c
	for c in kubelet kube-proxy coredns; do kubeconfig "$c" "$NODE/$c.kubeconfig"; done

	# containerd 2 (config version 3): its own root, state and socket; pulls of
	# docker.io and registry.k8s.io go to the local registry (certs.d).
	cat >"$NODE/containerd.toml" <<TOML
version = 3
root = "$NODE/containerd"
state = "$NODE/containerd-state"
[grpc]
  address = "$NODE/containerd.sock"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$NODE/certs.d"
# No CAP_SYS_RESOURCE here (a sandboxed machine): an oom_score_adj below
# containerd's own (the pause container's -998) cannot be set, so keep it there.
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = "$(command -v runc)"
      Root = "$NODE/runc"
      SystemdCgroup = false
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "$NODE/cni"
TOML
	local reg
	for reg in docker.io registry.k8s.io gcr.io; do
		mkdir -p "$NODE/certs.d/$reg"
		cat >"$NODE/certs.d/$reg/hosts.toml" <<TOML
[host."http://$MP3_NODE_REGISTRY"]
  capabilities = ["pull", "resolve"]
TOML
	done

	mkdir -p "$NODE/cni"
	cat >"$NODE/cni/10-mp3.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "mp3", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$NODE/cni-ipam",
            "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
JSON

	# The pods' resolv.conf search base; CoreDNS answers everything else.
	echo "nameserver $BRIDGE_IP" >"$NODE/resolv.conf"
	cat >"$NODE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroups v1 only; 1.35+ refuses them unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$NODE/containerd.sock
address: $ip
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: $RUN/pki/kubelet.crt
tlsPrivateKeyFile: $RUN/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $RUN/pki/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $NODE/resolv.conf
podLogsDir: $NODE/pod-logs
podCIDR: $POD_CIDR
failSwapOn: false
# See restrict_oom_score_adj in containerd.toml.
oomScoreAdj: 0
serializeImagePulls: false
maxPods: 40
# A shared CI disk may be nearly full: evict nothing for disk space.
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
YAML
	cat >"$NODE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODE/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the host's conntrack sysctls and its own oom_score_adj alone.
conntrack: {maxPerCore: 0}
oomScoreAdj: 0
YAML
	cat >"$NODE/Corefile" <<COREFILE
.:53 {
    bind $BRIDGE_IP
    errors
    hosts {
        $BRIDGE_IP host.minikube.internal
        fallthrough
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $NODE/coredns.kubeconfig mp3converter-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
}
COREFILE
}

# bridge_up: the pods' bridge, made before CNI does so that CoreDNS and the
# port forwards can listen on its address before the first pod.
bridge_up() {
	ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
	ip addr show dev "$BRIDGE" | grep -q "inet $BRIDGE_IP/" || ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	# Routing for the pods, and Service rules for traffic between pods on
	# the bridge; the old values are put back by `down`.
	local k
	for k in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables; do
		echo "$k=$(sysctl -n "$k")" >>"$NODE/sysctl.saved"
		sysctl -qw "$k=1"
	done
}

# forward_host_ports: this machine's servers listen on 127.0.0.1 only; the
# pods reach them on the bridge's address.
forward_host_ports() {
	local p
	for p in ${MP3_NODE_FORWARD:-}; do
		start "forward-$p" socat "TCP-LISTEN:$p,bind=$BRIDGE_IP,reuseaddr,fork" "TCP:127.0.0.1:$p"
	done
}

# need_packages: what the node runs from Debian (runc, the CNI plugins,
# iptables, socat, iproute2, openssl), installed when missing.
need_packages() {
	local missing=() t
	declare -A pkg=([runc]=runc [socat]=socat [iptables]=iptables [ip]=iproute2 [openssl]=openssl)
	for t in "${!pkg[@]}"; do command -v "$t" >/dev/null || missing+=("${pkg[$t]}"); done
	[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
	((${#missing[@]} == 0)) && return
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2 ||
		die "apt-get install ${missing[*]} failed"
}

cmd_up() {
	cluster
	[[ $EUID == 0 ]] || die "run as root (containers, mounts, iptables)"
	need_packages
	[[ -n ${MP3_NODE_REGISTRY:-} ]] || die "MP3_NODE_REGISTRY (the images' registry, host:port) is not set"
	[[ ! -d "$NODE/pids" ]] || die "$NODE holds a node: run '$0 down' first"
	cmd_build
	local start_s=$SECONDS ip
	ip=$(node_ip)
	[[ -n $ip ]] || die "no address on a default route for the node"
	mkdir -p "$NODE/pids" "$RUN/logs"
	write_configs "$ip"
	bridge_up
	forward_host_ports
	export PATH="$NODE_BIN:$PATH" # containerd finds its shim on PATH
	start containerd "$NODE_BIN/containerd" --config "$NODE/containerd.toml"
	wait_for "containerd" 60 containerd "$NODE_BIN/ctr" --address "$NODE/containerd.sock" version
	start coredns "$NODE_BIN/coredns" -conf "$NODE/Corefile"
	start kube-proxy "$NODE_BIN/kube-proxy" --config "$NODE/kube-proxy.yaml"
	start kubelet "$NODE_BIN/kubelet" --config "$NODE/kubelet.yaml" --kubeconfig "$NODE/kubelet.kubeconfig" \
		--hostname-override "$NODE_NAME" --node-ip "$ip" --root-dir "$NODE/kubelet" --cert-dir "$NODE/kubelet-pki"
	# The cluster DNS Service: kube-proxy sends its address to CoreDNS on the host.
	kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns}
addressType: IPv4
ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
endpoints: [{addresses: ["$BRIDGE_IP"]}]
YAML
	wait_for "node $NODE_NAME Ready" 120 kubelet kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
	alive coredns || die "coredns exited (log: $RUN/logs/node-coredns.log)"
	alive kube-proxy || die "kube-proxy exited (log: $RUN/logs/node-kube-proxy.log)"
	log "node $NODE_NAME ($ip) Ready in $((SECONDS - start_s))s (logs: $RUN/logs/node-*.log)"
}

# --- down --------------------------------------------------------------------

stop_proc() { # name
	local pid
	[[ -f "$NODE/pids/$1" ]] || return 0
	pid=$(cat "$NODE/pids/$1")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$NODE/pids/$1"
}

# drop_iptables: remove the rules and chains of kube-proxy (KUBE-*) and of
# the CNI plugins (CNI-*), leaving every other rule as it was.
drop_iptables() {
	local table
	for table in nat filter mangle; do
		iptables-save -t "$table" | grep -Ev -- '^:(KUBE|CNI)-|-j (KUBE|CNI)-|^-A (KUBE|CNI)-' | iptables-restore -T "$table" || true
	done
}

cmd_down() {
	[[ -d "$NODE/pids" ]] || { log "no node in $NODE"; return 0; }
	stop_proc kubelet
	local ctr=("$NODE_BIN/ctr" --address "$NODE/containerd.sock" -n k8s.io) id
	if alive containerd; then
		for id in $("${ctr[@]}" tasks list -q 2>/dev/null); do "${ctr[@]}" tasks kill -s SIGKILL "$id" 2>/dev/null || true; done
		sleep 1
		for id in $("${ctr[@]}" tasks list -q 2>/dev/null); do "${ctr[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true; done
	fi
	local p
	for p in "$NODE"/pids/*; do [[ -e $p ]] && stop_proc "$(basename "$p")"; done
	# Shims outlive containerd; then unmount what the pods left (deepest first).
	pkill -KILL -f "^$NODE_BIN/containerd-shim-runc-v2" 2>/dev/null || true
	awk -v n="$NODE" 'index($2, n) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	drop_iptables
	ip link del "$BRIDGE" 2>/dev/null || true
	if [[ -f "$NODE/sysctl.saved" ]]; then
		sort -u "$NODE/sysctl.saved" | while read -r kv; do sysctl -qw "$kv" || true; done
	fi
	rm -rf "$NODE"
	log "node stopped"
}

case "${1:-}" in
build) cmd_build ;;
up) cmd_up ;;
down) cmd_down ;;
*)
	echo "usage: $0 build|up|down" >&2
	exit 2
	;;
esac
