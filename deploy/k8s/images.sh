#!/usr/bin/env bash
# The four service images, built from Dockerfile.{gateway,auth,converter,
# notification} at the repo root, unchanged, on a machine with no Docker
# engine and no outside image registry. buildah builds them; the bases the
# Dockerfiles name are stand-ins made here and served by a CNCF distribution
# registry on loopback, which buildah is told (through a registries.conf of
# our own, so the host's config is untouched) is docker.io and gcr.io:
#   golang:1.26-bookworm      debootstrap minbase + ca-certificates, git and this machine's Go
#   debian:bookworm-slim      debootstrap minbase with this host's apt sources
#   gcr.io/distroless/static-debian12:nonroot
#                             passwd/group (root, nonroot 65532), CA bundle, tzdata, /tmp; USER 65532
#
#   deploy/k8s/images.sh build          the bases if missing or stale, then the four images, tagged
#                                       mp3converter/<svc>:<git describe> and :<tag in manifests/<svc>>,
#                                       pushed to the registry and saved as docker archives in the cache;
#                                       starts the registry if it is down and stops it again at the end
#   deploy/k8s/images.sh verify         run each image as its USER: <svc> -version and a probe
#                                       (uid, CA bundle, tzdata, shell, ffmpeg); check ENTRYPOINT/USER/ENV
#   deploy/k8s/images.sh list           print the images' refs in the registry
#   deploy/k8s/images.sh registry-up    start the registry and leave it running (for a containerd to pull)
#   deploy/k8s/images.sh registry-down  stop it
#
# Environment:
#   MP3_IMAGES_CACHE   default ~/.cache/mp3converter-k8s/images: debootstrap rootfs, registry binary
#                      and data, buildah storage, archives/<svc>.tar, logs
#   MP3_IMAGES_RUN     default ${TMPDIR:-/tmp}/mp3converter-images-run: registry pid/addr/config/log,
#                      registries.conf, buildah runroot
#   MP3_REGISTRY_ADDR  default 127.0.0.1:5001
#   VERSION            build: default `git describe --always --dirty`, as in the Makefile;
#                      list, verify: default the one the last build used
#
# Needs root. Cold (2 busy cores): registry build ~4 min, debootstrap ~1 min, bases ~1 min,
# images ~6 min (the first pays `go mod download`; each compiles its own deps); warm ~15 s.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${MP3_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mp3converter-k8s/images}"
RUN="${MP3_IMAGES_RUN:-${TMPDIR:-/tmp}/mp3converter-images-run}"
REG="${MP3_REGISTRY_ADDR:-127.0.0.1:5001}"
VERSION_SET="${VERSION:-}"
VERSION="${VERSION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev)}"
SERVICES=(gateway auth converter notification)
SUITE=bookworm GO_MINOR=1.26 # the golang stand-in is golang:$GO_MINOR-$SUITE
STD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The stand-ins, as the Dockerfiles name them -> their repository in the registry.
declare -A BASES=(
	["golang:$GO_MINOR-$SUITE"]="library/golang:$GO_MINOR-$SUITE"
	["debian:$SUITE-slim"]="library/debian:$SUITE-slim"
	["gcr.io/distroless/static-debian12:nonroot"]="distroless/static-debian12:nonroot"
)
export GOWORK=off GOFLAGS="${GOFLAGS:-} -buildvcs=false"
# buildah and skopeo read these two: our storage, our registry mapping.
export CONTAINERS_STORAGE_CONF="$RUN/storage.conf" CONTAINERS_REGISTRIES_CONF="$RUN/registries.conf"

log() { printf 'images.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
sha() { sha256sum | cut -d' ' -f1; }
# Say which command stopped the script (set -e alone exits silently).
trap 'die "line $LINENO: $BASH_COMMAND failed"' ERR

# timed WHAT CMD...: run CMD, then log how long it took.
timed() {
	local what=$1 t=$SECONDS
	shift
	"$@"
	log "$what: $((SECONDS - t))s"
}

# quiet LOG CMD...: run an external command into LOG; on failure show its tail and stop.
quiet() {
	local lf=$1
	shift
	"$@" >>"$lf" 2>&1 || { tail -n 40 "$lf" >&2; die "${*:1:2} failed (full log: $lf)"; }
}

# --- setup -------------------------------------------------------------------

need_tools() {
	[[ $EUID == 0 ]] || die "run as root (buildah with overlay storage, debootstrap)"
	command -v go >/dev/null || die "go is not installed (the golang stand-in copies this machine's Go)"
	[[ "$(go env GOVERSION)" == go$GO_MINOR.* ]] || die "golang:$GO_MINOR-$SUITE stand-in needs Go $GO_MINOR here, have $(go env GOVERSION)"
	local missing=() p
	for p in buildah skopeo debootstrap runc curl; do command -v "$p" >/dev/null || missing+=("$p"); done
	((${#missing[@]} == 0)) && return 0
	log "installing ${missing[*]} from Debian"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } ||
		die "apt-get install ${missing[*]} failed"
}

# setup writes the storage and registries config both buildah and skopeo read.
# The registry is given as docker.io and gcr.io itself (not as a mirror with a
# fallback), so a base that is not in it fails at once instead of timing out.
setup() {
	# runc, even where crun is installed too: buildah would pick crun, and
	# crun 1.8 refuses this host's hybrid cgroup v1 + v2 layout.
	BUILDAH_RUNTIME=$(command -v runc) || die "runc is not installed"
	export BUILDAH_RUNTIME
	mkdir -p "$CACHE"/{bases,bin,logs,archives,registry} "$RUN"
	cat >"$CONTAINERS_STORAGE_CONF" <<-EOF
		[storage]
		driver = "overlay"
		graphroot = "$CACHE/storage"
		runroot = "$RUN/storage"
	EOF
	cat >"$CONTAINERS_REGISTRIES_CONF" <<-EOF
		# Written by deploy/k8s/images.sh: the bases' registries are the local stand-in.
		unqualified-search-registries = ["docker.io"]
		short-name-mode = "permissive"
		[[registry]]
		prefix = "docker.io"
		location = "$REG"
		insecure = true
		[[registry]]
		prefix = "gcr.io"
		location = "$REG"
		insecure = true
		[[registry]]
		prefix = "$REG"
		location = "$REG"
		insecure = true
	EOF
}

# check_dockerfiles: every FROM is a stand-in made here or an earlier stage,
# and every service has its tag in manifests/.
check_dockerfiles() {
	local svc f from as name stages
	for svc in "${SERVICES[@]}"; do
		f="$ROOT/Dockerfile.$svc" stages=" "
		[[ -f $f ]] || die "$f is missing"
		manifest_tag "$svc" >/dev/null # here, where its die stops the script
		while read -r _ from as name; do
			[[ ${as,,} == as ]] && stages+="$name "
			[[ -v BASES[$from] || $stages == *" $from "* ]] ||
				die "$f: FROM $from has no stand-in (images.sh makes: ${!BASES[*]})"
		done < <(grep -iE '^FROM[[:space:]]' "$f")
	done
}

manifest_tag() {
	local f="$ROOT/manifests/$1/deployment.yaml" t
	t=$(grep -m1 -oE "image: *\"?mp3converter/$1:[^\" ]+" "$f" 2>/dev/null | sed 's/.*://') || true
	[[ -n $t ]] || die "no 'image: mp3converter/$1:<tag>' in $f"
	echo "$t"
}

# tags SVC: the tags an image gets, the VERSION and the manifests' one.
tags() {
	local t
	t=$(manifest_tag "$1")
	if [[ $t == "$VERSION" ]]; then echo "$t"; else echo "$VERSION $t"; fi
}

# --- the registry and the probe, built from images/go.mod --------------------

build_tools() {
	local stamp
	stamp=$(cat "$HERE/images/go.mod" "$HERE/images/go.sum" "$HERE"/images/probe/*.go | sha)
	[[ -x $CACHE/bin/registry && -x $CACHE/bin/probe && "$(cat "$CACHE/bin/stamp" 2>/dev/null)" == "$stamp" ]] && return 0
	log "building the registry (see images/go.mod) and the probe into $CACHE/bin (first time: ~4 min)"
	rm -rf "$CACHE/bin.tmp" && mkdir -p "$CACHE/bin.tmp"
	local t=$SECONDS
	# static: the probe runs inside distroless
	(cd "$HERE/images" && CGO_ENABLED=0 go build -trimpath -o "$CACHE/bin.tmp/" \
		github.com/distribution/distribution/v3/cmd/registry ./probe) || die "go build of the registry failed"
	log "registry build: $((SECONDS - t))s"
	rm -rf "${CACHE:?}/bin" && mv "$CACHE/bin.tmp" "$CACHE/bin"
	echo "$stamp" >"$CACHE/bin/stamp"
}

registry_alive() { curl -fs -o /dev/null --max-time 2 "http://$REG/v2/"; }

# registry_ours: the pid in the run dir is our registry binary, still running
# (the binary may since have been rebuilt: then its exe reads "... (deleted)").
registry_ours() {
	local pid
	pid=$(cat "$RUN/registry.pid" 2>/dev/null) || return 1
	[[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$(readlink -f "$CACHE/bin")/registry"* ]]
}

cmd_registry_up() {
	setup
	if registry_ours && registry_alive; then
		log "registry up at $REG (pid $(cat "$RUN/registry.pid"))"
		return 0
	fi
	! registry_alive || die "something else answers at $REG; set MP3_REGISTRY_ADDR"
	build_tools
	cat >"$RUN/registry.yml" <<-EOF
		version: 0.1
		log: {level: warn, accesslog: {disabled: true}}
		storage:
		  filesystem: {rootdirectory: $CACHE/registry}
		  delete: {enabled: true}
		http: {addr: "$REG"}
	EOF
	# setsid: outlives this shell; plain HTTP, loopback only; no tracing exporter to dial.
	OTEL_TRACES_EXPORTER=none setsid "$CACHE/bin/registry" serve "$RUN/registry.yml" \
		>"$RUN/registry.log" 2>&1 </dev/null &
	echo $! >"$RUN/registry.pid"
	echo "$REG" >"$RUN/registry.addr"
	for _ in $(seq 50); do
		registry_alive && { log "registry up at $REG (pid $!, data in $CACHE/registry)"; return 0; }
		kill -0 $! 2>/dev/null || break
		sleep 0.2
	done
	tail -n 20 "$RUN/registry.log" >&2
	die "registry did not come up at $REG"
}

cmd_registry_down() {
	registry_ours || { log "no registry of ours running (run dir $RUN)"; return 0; }
	local pid
	pid=$(cat "$RUN/registry.pid")
	kill "$pid"
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	rm -f "$RUN/registry.pid" "$RUN/registry.addr"
	log "registry stopped (pid $pid)"
}

# have REPO:TAG: the registry holds that manifest.
have() {
	curl -fs -o /dev/null -I --max-time 5 \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json' \
		"http://$REG/v2/${1%:*}/manifests/${1##*:}"
}

# --- the bases ---------------------------------------------------------------

# The enabled apt sources of the host, and its Debian mirror: what answers here.
host_sources() { ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; }
debian_mirror() {
	local m
	m=$(host_sources | xargs -r grep -hv '^[[:space:]]*#' | grep -oE '(https?|file)://[^ ]+/debian/?([[:space:]]|$)' | head -n1) || true
	m=$(echo "$m" | tr -d '[:space:]')
	echo "${MP3_DEBIAN_MIRROR:-${m:-http://deb.debian.org/debian}}"
}

minbase_stamp() { { debian_mirror; host_sources | xargs -r cat; declare -f make_minbase; } | sha; }

# make_minbase: bases/minbase.tar, a debootstrap minbase root whose apt uses
# the host's sources (and their keyrings), with no package lists or debs.
make_minbase() {
	local dir="$CACHE/bases/minbase.tmp" f
	rm -rf "$dir"
	log "debootstrap --variant=minbase $SUITE from $(debian_mirror)"
	quiet "$CACHE/logs/debootstrap.log" debootstrap --variant=minbase "$SUITE" "$dir" "$(debian_mirror)"
	rm -f "$dir/etc/apt/sources.list"
	for f in $(host_sources); do cp "$f" "$dir$f"; done
	for f in $(host_sources | xargs -r grep -hoiE 'signed-by(:[[:space:]]*|=)[^] ]+' | sed -E 's/^[^:=]*[:=][[:space:]]*//' | sort -u); do
		if [[ -f $f && ! -e $dir$f ]]; then install -D -m 644 "$f" "$dir$f"; fi
	done
	rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* "$dir"/var/log/*
	tar --numeric-owner -C "$dir" -cf "$CACHE/bases/minbase.tar.tmp" .
	mv "$CACHE/bases/minbase.tar.tmp" "$CACHE/bases/minbase.tar"
	rm -rf "$dir"
	minbase_stamp >"$CACHE/bases/minbase.stamp"
}

bases_stamp() { { minbase_stamp; go version; go env GOPROXY; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null; declare -f make_bases base_from_minbase mounted write_distroless; } | sha; }

# mounted CONTAINER: its root on the host (never empty: callers write into it).
mounted() {
	local m
	m=$(buildah mount "$1")
	[[ -d $m && $m != / ]] || die "buildah mount $1 gave '$m'"
	echo "$m"
}

# base_from_minbase: a working container holding the minbase root.
base_from_minbase() {
	local c m
	c=$(buildah from -q scratch)
	m=$(mounted "$c")
	tar --numeric-owner -C "$m" -xf "$CACHE/bases/minbase.tar"
	echo "$c"
}

# write_distroless DIR GOLANG_ROOT: the files of distroless/static's nonroot
# flavour that a static binary uses; no shell, no package manager.
write_distroless() {
	local d=$1 g=$2
	mkdir -p "$d"/{etc/ssl/certs,usr/share,home/nonroot,root,tmp}
	printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
		'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$d/etc/passwd"
	printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$d/etc/group"
	echo 'hosts: files dns' >"$d/etc/nsswitch.conf"
	printf '%s\n' 'PRETTY_NAME="Distroless (stand-in)"' 'ID=debian' 'VERSION_ID="12"' >"$d/etc/os-release"
	cp "$g/etc/ssl/certs/ca-certificates.crt" "$d/etc/ssl/certs/"
	cp -a "$g/usr/share/zoneinfo" "$d/usr/share/"
	chmod 1777 "$d/tmp"
	chmod 700 "$d/root" "$d/home/nonroot"
	chown 65532:65532 "$d/home/nonroot"
}

# make_bases: the three stand-ins, committed straight into the registry, so
# the builds below get them the way they would from Docker Hub and gcr.io.
make_bases() {
	local slim gob ds gm dm lf="$CACHE/logs/bases.log"
	slim=$(base_from_minbase)
	buildah config --env PATH="$STD_PATH" --cmd '["bash"]' "$slim"
	quiet "$lf" buildah commit --tls-verify=false --rm "$slim" "docker://$REG/${BASES[debian:$SUITE-slim]}"

	gob=$(base_from_minbase)
	gm=$(mounted "$gob")
	# This host's own CAs (a TLS-intercepting egress here): without them the
	# build stage's `go mod download` fails x509 checks. ca-certificates'
	# postinst adds them to the bundle, which the distroless stand-in copies.
	if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
		mkdir -p "$gm/usr/local/share/ca-certificates"
		cp /usr/local/share/ca-certificates/*.crt "$gm/usr/local/share/ca-certificates/"
	fi
	quiet "$lf" buildah run --network host "$gob" -- sh -c 'apt-get update -q &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates git &&
		rm -rf /var/lib/apt/lists/*'
	mkdir -p "$gm/usr/local/go" "$gm/go/bin" "$gm/go/src"
	cp -a "$(go env GOROOT)/." "$gm/usr/local/go/"
	chmod -R 1777 "$gm/go"
	buildah config --workingdir /go --cmd '["bash"]' --env GOLANG_VERSION="$(go env GOVERSION | sed 's/^go//')" \
		--env GOTOOLCHAIN=local --env GOPATH=/go --env PATH="/go/bin:/usr/local/go/bin:$STD_PATH" \
		--env GOPROXY="$(go env GOPROXY)" "$gob"

	ds=$(buildah from -q scratch)
	dm=$(mounted "$ds")
	write_distroless "$dm" "$gm"
	buildah config --user 65532 --workingdir /home/nonroot --env PATH="$STD_PATH" \
		--env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$ds"
	quiet "$lf" buildah commit --tls-verify=false --rm "$gob" "docker://$REG/${BASES[golang:$GO_MINOR-$SUITE]}"
	quiet "$lf" buildah commit --tls-verify=false --rm "$ds" "docker://$REG/${BASES[gcr.io/distroless/static-debian12:nonroot]}"
}

ensure_bases() {
	if [[ ! -f $CACHE/bases/minbase.tar || "$(cat "$CACHE/bases/minbase.stamp" 2>/dev/null)" != "$(minbase_stamp)" ]]; then
		timed debootstrap make_minbase
	fi
	local want b absent=
	want=$(bases_stamp)
	for b in "${BASES[@]}"; do have "$b" || absent+=" $b"; done
	if [[ -z $absent && "$(cat "$CACHE/bases/bases.stamp" 2>/dev/null)" == "$want" ]]; then
		log "bases present in $REG (skipping)"
		return 0
	fi
	log "making the stand-in bases (${absent:+missing:$absent; }stamp $(cut -c1-12 <<<"$want"))"
	timed bases make_bases
	echo "$want" >"$CACHE/bases/bases.stamp"
}

# --- the images --------------------------------------------------------------

# build_image SVC: buildah bud with a layer cache (so `go mod download` and the
# shared build-stage steps are done once for all four), host networking (the
# build stage reaches the Go module proxy, the converter's apt-get the Debian
# mirror), and --pull=true (pull a base when the registry's differs from ours).
build_image() {
	local svc=$1 t targs=()
	local lf="$CACHE/logs/build-$svc.log"
	for t in $(tags "$svc"); do targs+=(-t "mp3converter/$svc:$t"); done
	quiet "$lf" buildah bud --layers --pull=true --network host --build-arg VERSION="$VERSION" \
		-f "$ROOT/Dockerfile.$svc" "${targs[@]}" "$ROOT"
	log "$svc: built ($(grep -c 'Using cache' "$lf" || true) steps from cache)"
	for t in $(tags "$svc"); do
		quiet "$lf" buildah push --tls-verify=false "mp3converter/$svc:$t" "docker://$REG/mp3converter/$svc:$t"
	done
	# A docker archive names its images, so `ctr images import` tags them as the manifests do.
	local mt extra=()
	mt=$(manifest_tag "$svc")
	[[ $VERSION == "$mt" ]] || extra=(--additional-tag "docker.io/mp3converter/$svc:$VERSION")
	rm -f "$CACHE/archives/$svc.tar"
	quiet "$lf" skopeo copy "containers-storage:localhost/mp3converter/$svc:$mt" \
		"docker-archive:$CACHE/archives/$svc.tar:docker.io/mp3converter/$svc:$mt" "${extra[@]}"
}

# prune_old: what earlier builds left in the storage goes, so it holds one
# version (each build stage leaves ~400 MB of go build cache per service):
# other tags of the four images, then untagged leaf images that no step of
# this build produced or reused (the ids its logs print), repeated as their
# parents become leaves. The bases are tagged, so they stay.
prune_old() {
	local keep img svc ids _
	keep=$(grep -hoE -- '--> (Using cache )?[0-9a-f]{11,}' "$CACHE"/logs/build-*.log | awk '{print substr($NF, 1, 11)}' | sort -u)
	for svc in "${SERVICES[@]}"; do
		for img in $(buildah images --format '{{.Name}}:{{.Tag}}' | grep "^localhost/mp3converter/$svc:" || true); do
			[[ " $(tags "$svc") " == *" ${img##*:} "* ]] || buildah rmi "$img" >/dev/null
		done
	done
	for _ in $(seq 30); do
		ids=$(buildah images --filter dangling=true --format '{{.ID}}' | awk -v keep="$keep" \
			'BEGIN { n = split(keep, k, "\n"); for (i = 1; i <= n; i++) kept[k[i]] = 1 } !(substr($1, 1, 11) in kept)')
		[[ -n $ids ]] || return 0
		# shellcheck disable=SC2086 # one id a word
		buildah rmi $ids >/dev/null || { log "prune: buildah rmi failed; storage left as it is"; return 0; }
	done
}

cmd_build() {
	need_tools
	setup
	check_dockerfiles
	exec 9>"$CACHE/lock"
	flock -n 9 || die "another images.sh build/verify holds $CACHE/lock"
	rm -f "$CACHE"/logs/*.log
	# The storage is ours alone: drop working containers an interrupted run left.
	buildah rm --all >/dev/null
	if ! { registry_ours && registry_alive; }; then
		cmd_registry_up
		trap cmd_registry_down EXIT
	fi
	ensure_bases
	local svc
	for svc in "${SERVICES[@]}"; do timed "image $svc" build_image "$svc"; done
	timed prune prune_old
	echo "$VERSION" >"$CACHE/version"
	log "done: VERSION=$VERSION; archives in $CACHE/archives; logs in $CACHE/logs"
	cmd_list
}

# --- verify, list ------------------------------------------------------------

# verify_image SVC: the image's config, then -version and the probe run in a
# throwaway container as the image's USER (buildah run: runc, no network).
verify_image() {
	local svc=$1 c cfg out l id=65532 need
	local ref="localhost/mp3converter/$svc:$VERSION"
	need=/etc/ssl/certs/ca-certificates.crt,/usr/share/zoneinfo/UTC
	[[ $svc != converter ]] || id=10001 need=/usr/bin/ffmpeg,/usr/bin/ffprobe
	# buildah 1.28's --format has no json: one field a line, slices as [a b].
	cfg=$(buildah inspect --type image --format $'ENTRYPOINT={{.OCIv1.Config.Entrypoint}}\nUSER={{.OCIv1.Config.User}}\nENV={{.OCIv1.Config.Env}}\nEXPOSE={{.OCIv1.Config.ExposedPorts}}' "$ref" 2>/dev/null) ||
		die "no image $ref: run build first (VERSION=$VERSION)"
	while read -r l; do echo "$svc config: $l"; done <<<"$cfg"
	[[ $cfg == *"ENTRYPOINT=[/usr/local/bin/$svc]"* ]] || die "$svc: ENTRYPOINT is not [/usr/local/bin/$svc]"
	[[ $cfg == *"USER=$id:$id"$'\n'* ]] || die "$svc: USER is not $id:$id"
	if [[ $svc == converter ]]; then
		[[ $cfg == *FFMPEG_PATH=/usr/bin/ffmpeg* && $cfg == *FFPROBE_PATH=/usr/bin/ffprobe* ]] || die "converter: FFMPEG_PATH/FFPROBE_PATH not set"
	fi
	c=$(buildah from -q --pull=never "$ref")
	out=$(buildah run --network none "$c" -- "/usr/local/bin/$svc" -version) || { buildah rm "$c" >/dev/null; die "$svc -version failed"; }
	echo "$svc -version: $out"
	[[ $out == "$VERSION" ]] || { buildah rm "$c" >/dev/null; die "$svc -version printed '$out', want '$VERSION'"; }
	buildah copy -q "$c" "$CACHE/bin/probe" /probe >/dev/null
	out=$(buildah run --network none "$c" -- /probe -need "$need") || { echo "$out"; buildah rm "$c" >/dev/null; die "$svc: probe failed"; }
	[[ $svc != converter ]] || out+=$'\n'"ffmpeg: $(buildah run --network none "$c" -- /usr/bin/ffmpeg -version | head -n1)"
	buildah rm "$c" >/dev/null
	while read -r l; do echo "$svc probe: $l"; done <<<"$out"
	[[ $out == *"uid=$id gid=$id "* ]] || die "$svc does not run as uid $id"
	[[ $svc == converter || $out == *"exists /bin/sh=false"* ]] || die "$svc: distroless image has a shell"
}

# built_version: list and verify look at the last build, not at what the
# work tree (which may have moved on) would build now.
built_version() {
	[[ -n $VERSION_SET ]] && return 0
	VERSION=$(cat "$CACHE/version" 2>/dev/null) || die "nothing built yet (no $CACHE/version): run $0 build"
}

cmd_verify() {
	need_tools
	built_version
	setup
	build_tools
	exec 9>"$CACHE/lock"
	flock -n 9 || die "another images.sh build/verify holds $CACHE/lock"
	local svc
	for svc in "${SERVICES[@]}"; do verify_image "$svc"; done
	log "all four images verified (VERSION=$VERSION)"
}

cmd_list() {
	local svc t
	built_version
	for svc in "${SERVICES[@]}"; do
		for t in $(tags "$svc"); do echo "$REG/mp3converter/$svc:$t"; done
	done
}

case "${1:-}" in
build) cmd_build ;;
verify) cmd_verify ;;
list) cmd_list ;;
registry-up)
	need_tools
	cmd_registry_up
	;;
registry-down) cmd_registry_down ;;
*) die "usage: $0 build|verify|list|registry-up|registry-down" ;;
esac
