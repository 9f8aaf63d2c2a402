#!/usr/bin/env bash
# The local stack for `make test` and `make run`: the real servers the services
# talk to (README.md, "The two commands"; docs/architecture.md).
#
#   deploy/stack.sh up     ensure MariaDB, RabbitMQ, PostgreSQL, ffmpeg and the original's
#                          libraries for Debian's /usr/bin/python3 (pymongo, gridfs, pika,
#                          PyJWT: see ensure_python_peers), installing Debian packages
#                          when missing; build FerretDB and Mailpit
#                          (with its web UI: see build_mailpit) from deploy/tools
#                          when stale, start them, write $RUN/env
#                          (restarting FerretDB/Mailpit when their binary was rebuilt)
#   deploy/stack.sh down   stop what `up` started (and only that)
#   deploy/stack.sh env    print the path of the env file (`. "$(deploy/stack.sh env)"`)
#   deploy/stack.sh build  only build the pinned tools into the cache
#
# Idempotent: a second `up` reuses live servers and cached binaries.
#
# Environment (all optional):
#   MP3_CACHE_DIR (REPO/.cache)  built tools in $MP3_CACHE_DIR/bin, survives `down`;
#       also Mailpit's web UI build (mailpit-src/, npm/, mailpit-ui.log), see build_mailpit
#   MP3_RUN_DIR   (REPO/.run)    pidfiles, logs, Mailpit data, the env file
#   MYSQL_PORT (3306) MYSQL_USER (root) MYSQL_PASSWORD ('')
#   RABBITMQ_PORT (5672)  RABBITMQ_MANAGEMENT=1 enables the management plugin
#   POSTGRES_PORT (5432)  FERRETDB_PG_DB (ferretdb)
#   FERRETDB_PORT (27018) MAILPIT_SMTP_PORT (1025) MAILPIT_HTTP_PORT (8025):
#       when unset and the default is taken, the next free port is used.
#   MP3_NEED_CHROMIUM=1  install Debian's chromium when missing (browser tests);
#       CHROMIUM_PATH is exported in the env file whenever chromium is installed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$REPO/deploy/tools
CACHE=${MP3_CACHE_DIR:-$REPO/.cache}
BIN=$CACHE/bin
RUN=${MP3_RUN_DIR:-$REPO/.run}
ENVFILE=$RUN/env
MAILPIT_VERSION=v1.33.1

MYSQL_PORT=${MYSQL_PORT:-3306}
MYSQL_USER=${MYSQL_USER:-root}
MYSQL_PASSWORD=${MYSQL_PASSWORD:-}
RABBITMQ_PORT=${RABBITMQ_PORT:-5672}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
FERRETDB_PG_DB=${FERRETDB_PG_DB:-ferretdb}

export DEBIAN_FRONTEND=noninteractive
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

summary=()
log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }
note() { summary+=("$(printf '%-12s %s' "$1" "$2")"); }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# wait_until SECONDS WHAT CMD...: poll CMD every 0.3 s; fail with a clear message.
wait_until() {
	local secs=$1 what=$2; shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		# proc=NAME: fail at once when our background process has exited.
		if [ -n "${proc:-}" ] && ! alive "$proc"; then
			tail -n 20 "$RUN/$proc.log" >&2 || true
			die "$what: $proc exited (log: $RUN/$proc.log)"
		fi
		[ "$SECONDS" -lt "$deadline" ] || die "$what did not become ready within ${secs}s${hint:+ ($hint)}"
		sleep 0.3
	done
}

apt_updated=
apt_install() {
	command -v apt-get >/dev/null || die "need Debian packages $* but apt-get is missing"
	log "installing Debian packages: $* (this can take a few minutes)"
	local opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
	if [ -z "$apt_updated" ]; then
		as_root timeout 600 apt-get "${opts[@]}" update -qq >&2 || die "apt-get update failed"
		apt_updated=1
	fi
	as_root timeout 1200 apt-get "${opts[@]}" install -y -qq --no-install-recommends "$@" >&2 ||
		die "apt-get install $* failed"
}

# proc_running REGEX: some process's command line matches REGEX (no procps needed).
# Write the REGEX so that it does not match itself, e.g. '[b]eam.*rabbit'.
proc_running() { grep -qsaE -- "$1" /proc/[0-9]*/cmdline; }

tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# free_port DEFAULT: DEFAULT if nothing listens there, else the next free port.
free_port() {
	local p=$1
	while tcp_open "$p"; do
		p=$((p + 1))
		[ "$p" -lt $(($1 + 200)) ] || die "no free port in $1..$p"
	done
	echo "$p"
}

# pick_port VAR DEFAULT: the port named by env VAR, else a free one from DEFAULT.
pick_port() {
	local var=$1 def=$2
	if [ -n "${!var:-}" ]; then
		tcp_open "${!var}" && die "$var=${!var} is already in use by another process"
		echo "${!var}"
	else
		free_port "$def"
	fi
}

# ---------------------------------------------------------------- MariaDB

mysql_cli() { command -v mariadb || command -v mysql; }
mysql_ok() {
	MYSQL_PWD=$MYSQL_PASSWORD "$(mysql_cli)" --connect-timeout=2 -h127.0.0.1 -P"$MYSQL_PORT" \
		-u"$MYSQL_USER" -e 'select 1' >/dev/null 2>&1
}
mariadbd_bin() { command -v mariadbd || command -v mysqld || true; }

ensure_mysql() {
	local how="using running server"
	mysql_cli >/dev/null || apt_install mariadb-client
	if ! { mysql_cli >/dev/null && mysql_ok; } && ! tcp_open "$MYSQL_PORT"; then
		if [ -z "$(mariadbd_bin)" ] || ! mysql_cli >/dev/null; then apt_install mariadb-server mariadb-client; fi
		# apt may have started it already (sysv init inside containers).
		if ! tcp_open "$MYSQL_PORT"; then
			log "starting MariaDB"
			as_root install -d -o mysql -g mysql /run/mysqld
			as_root start-stop-daemon --start --oknodo --background --make-pidfile \
				--pidfile "$RUN/mariadb.pid" --exec "$(mariadbd_bin)" -- --user=mysql 9>&-
			touch "$RUN/started-mariadb"
			how="started MariaDB"
		fi
		hint="see /var/log/mysql" wait_until 60 "MariaDB on 127.0.0.1:$MYSQL_PORT" tcp_open "$MYSQL_PORT"
	fi
	# Fresh Debian: root@localhost authenticates only over the unix socket.
	# Let root in over TCP with the empty password (a development machine).
	if ! mysql_ok && [ "$MYSQL_USER" = root ] && [ -z "$MYSQL_PASSWORD" ] &&
		as_root "$(mysql_cli)" -uroot -e 'select 1' >/dev/null 2>&1; then
		log "allowing MariaDB root over TCP without password (development setup)"
		as_root "$(mysql_cli)" -uroot -e "
			ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
			CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED BY '';
			GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;
			FLUSH PRIVILEGES;" || die "could not configure MariaDB root login"
	fi
	wait_until 20 "MariaDB login as $MYSQL_USER@127.0.0.1:$MYSQL_PORT" mysql_ok
	note mysql "$how on 127.0.0.1:$MYSQL_PORT"
}

# ---------------------------------------------------------------- RabbitMQ

# A real AMQP handshake: the server answers the protocol header with Connection.Start.
amqp_ok() {
	timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$RABBITMQ_PORT && printf 'AMQP\\x00\\x00\\x09\\x01' >&3 &&
		dd bs=1 count=1 <&3 2>/dev/null | od -An -tx1" 2>/dev/null | grep -q 01
}

ensure_rabbitmq() {
	if amqp_ok; then
		note rabbitmq "using running server on 127.0.0.1:$RABBITMQ_PORT"
	else
		command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
		# apt may have started it already (sysv init inside containers).
		if ! amqp_ok && ! proc_running '[b]eam.*rabbit'; then
			log "starting RabbitMQ"
			as_root rabbitmq-server -detached >&2 9>&- || die "rabbitmq-server -detached failed"
			touch "$RUN/started-rabbitmq"
			note rabbitmq "started RabbitMQ on 127.0.0.1:$RABBITMQ_PORT"
		fi
		hint="see /var/log/rabbitmq" wait_until 120 "RabbitMQ on 127.0.0.1:$RABBITMQ_PORT" amqp_ok
	fi
	RABBITMQ_MGMT_URL=
	if [ "${RABBITMQ_MANAGEMENT:-0}" = 1 ] && ! tcp_open 15672; then
		log "enabling the RabbitMQ management plugin"
		as_root rabbitmq-plugins enable rabbitmq_management >&2 || die "could not enable rabbitmq_management"
		wait_until 60 "RabbitMQ management on 127.0.0.1:15672" tcp_open 15672
	fi
	if tcp_open 15672; then RABBITMQ_MGMT_URL=http://guest:guest@127.0.0.1:15672; fi
}

# ---------------------------------------------------------------- PostgreSQL

pg_version() { find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -1; }
pg_ready() { pg_isready -q -h 127.0.0.1 -p "$POSTGRES_PORT" -t 2; }
pg_root() { PGCONNECT_TIMEOUT=3 psql -w -X -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U root -d postgres -v ON_ERROR_STOP=1 -tAc "$1"; }
pg_super() { as_root su postgres -s /bin/sh -c "cd / && psql -X -q -p $POSTGRES_PORT -d postgres -v ON_ERROR_STOP=1 -tAc \"$1\""; }

ensure_postgres() {
	if pg_ready 2>/dev/null; then
		note postgres "using running server on 127.0.0.1:$POSTGRES_PORT"
	else
		if ! command -v pg_ctlcluster >/dev/null || ! command -v psql >/dev/null || [ -z "$(pg_version)" ]; then
			apt_install postgresql
		fi
		local v; v=$(pg_version)
		[ -n "$v" ] || die "PostgreSQL is installed but no cluster exists under /etc/postgresql"
		[ -d "/etc/postgresql/$v/main" ] || as_root pg_createcluster "$v" main >&2
		if ! pg_ready && ! as_root pg_ctlcluster "$v" main status >/dev/null 2>&1; then
			log "starting PostgreSQL $v"
			as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start >&2 9>&- || die "pg_ctlcluster $v main start failed"
			echo "$v" >"$RUN/started-postgresql"
			note postgres "started PostgreSQL $v on 127.0.0.1:$POSTGRES_PORT"
		fi
		hint="see /var/log/postgresql" wait_until 60 "PostgreSQL on 127.0.0.1:$POSTGRES_PORT" pg_ready
	fi
	# Tests and FerretDB connect as root over TCP without password.
	if ! pg_root 'select 1' >/dev/null 2>&1; then
		log "creating PostgreSQL role root with local trust (development setup)"
		pg_super "DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='root') THEN CREATE ROLE root SUPERUSER LOGIN; END IF; END\\\$\\\$" ||
			die "could not create PostgreSQL role root (as user postgres)"
		local hba; hba=$(pg_super 'show hba_file') || die "could not find pg_hba.conf"
		if ! as_root grep -q '^host all root 127.0.0.1/32 trust' "$hba"; then
			as_root sed -i '1i host all root 127.0.0.1/32 trust\nhost all root ::1/128 trust' "$hba"
		fi
		pg_super 'select pg_reload_conf()' >/dev/null
		wait_until 10 "PostgreSQL login as root@127.0.0.1:$POSTGRES_PORT" pg_root 'select 1'
	fi
	if [ -z "$(pg_root "select 1 from pg_database where datname='$FERRETDB_PG_DB'")" ]; then
		pg_root "create database \"$FERRETDB_PG_DB\"" >/dev/null || die "could not create database $FERRETDB_PG_DB"
		log "created PostgreSQL database $FERRETDB_PG_DB"
	fi
	POSTGRES_URL=postgres://root@127.0.0.1:$POSTGRES_PORT/$FERRETDB_PG_DB
}

# ---------------------------------------------------------------- ffmpeg

ensure_ffmpeg() {
	if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then apt_install ffmpeg; fi
	FFMPEG_PATH=$(command -v ffmpeg) FFPROBE_PATH=$(command -v ffprobe)
	note ffmpeg "$FFMPEG_PATH"
}

# ---------------------------------------------------------------- the original's Python libraries

# The tests that play the original's services (internal/e2e/testdata/original)
# run Debian's /usr/bin/python3 (not a python3 earlier on PATH) with the
# libraries the original uses: pymongo with gridfs, pika, PyJWT.
python_peers_ok() { /usr/bin/python3 -E -s -c 'import pymongo, gridfs, pika, jwt' >/dev/null 2>&1; }

ensure_python_peers() {
	if ! python_peers_ok; then apt_install python3 python3-pymongo python3-gridfs python3-pika python3-jwt; fi
	python_peers_ok || die "/usr/bin/python3 cannot import pymongo, gridfs, pika and jwt after installing them"
	note python "$(/usr/bin/python3 -E -s -c 'import pymongo, pika, jwt; print("/usr/bin/python3 with pymongo",
		pymongo.version, "pika", pika.__version__, "PyJWT", jwt.__version__)')"
}

# ---------------------------------------------------------------- pinned tools

# tools_hash [FILES]: what a build depends on (Go version, the module, FILES).
tools_hash() {
	{
		go env GOVERSION GOOS GOARCH
		cat "$TOOLS/go.mod" "$TOOLS/go.sum" "$TOOLS/tools.go" "$@"
	} | sha256sum | cut -d' ' -f1
}

# go_build DIR NAME PKG [go build args]: build PKG of the Go module in DIR
# into $BIN/.NAME.tmp, with the versions pinned by DIR's go.mod/go.sum.
go_build() {
	local dir=$1 name=$2 pkg=$3; shift 3
	(cd "$dir" && GOWORK=off GOFLAGS=-mod=readonly timeout 900 go build "$@" -o "$BIN/.$name.tmp" "$pkg")
}

# build NAME PKG [go build args]: rebuild $BIN/NAME when the tools module
# (or, for the wrapper, its source) changed.
build() {
	local name=$1 pkg=$2; shift 2
	local stamp=$BIN/.$name.stamp want
	if [ -d "$TOOLS/$pkg" ]; then want=$(tools_hash "$TOOLS/$pkg"/*.go); else want=$(tools_hash); fi
	if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return; fi
	command -v go >/dev/null || die "go is not on PATH"
	log "building $name (cold builds take a minute or two)"
	mkdir -p "$BIN"
	local t0=$SECONDS
	go_build "$TOOLS" "$name" "$pkg" "$@" >&2 || die "go build $pkg failed"
	mv -f "$BIN/.$name.tmp" "$BIN/$name"
	echo "$want" >"$stamp"
	log "built $name in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- Mailpit with its web UI

# Mailpit's Go module has the web UI's sources (server/ui-src, package.json,
# package-lock.json, esbuild.config.mjs) but not the built bundle (server/ui/dist
# is git-ignored upstream), so a plain `go build github.com/axllent/mailpit` serves
# the HTTP API only (GET /dist/app.js is a 404). build_mailpit does what upstream's
# Dockerfile does, on a copy of the pinned module in $MAILPIT_SRC: `npm ci` (the
# lockfile pins the npm packages), `npm run package` (esbuild into server/ui/dist),
# then `go build` of that copy with its own go.mod/go.sum. When node/npm or the npm
# registry are missing it builds the API-only binary with a warning: the tests use
# the HTTP API only and never depend on the UI. Rebuilds in the same $MAILPIT_SRC
# give a byte-identical binary; in another directory the UI bundle differs in
# minified names only (the Vue plugin hashes absolute paths into scoped-CSS ids).
MAILPIT_MOD=github.com/axllent/mailpit
MAILPIT_SRC=$CACHE/mailpit-src
MAILPIT_UI_LOG=$CACHE/mailpit-ui.log
MAILPIT_LDFLAGS="-X $MAILPIT_MOD/config.Version=$MAILPIT_VERSION"

# ensure_node: node and npm on PATH, installing Debian's nodejs and npm when missing.
ensure_node() {
	command -v node >/dev/null && command -v npm >/dev/null && return
	# A subshell: a failed install costs the web UI, not the whole `up`.
	(apt_install nodejs npm) || true
	command -v node >/dev/null && command -v npm >/dev/null
}

# mailpit_npm_ci: npm ci in $MAILPIT_SRC (without the flood of EBADENGINE warnings).
# --ignore-scripts: the build needs no install scripts (esbuild's binary comes from
# its optional package). --omit=peer: the packages that only peers need are not used
# by the build (sass-embedded: esbuild-sass-plugin uses sass), and the lockfile's
# sass-embedded@1.108.1 is missing from the npm registry here (404).
# The npm cache in $CACHE/npm makes rebuilds quick.
mailpit_npm_ci() {
	(cd "$MAILPIT_SRC" && timeout 900 npm ci --no-audit --no-fund --ignore-scripts \
		--include=dev --include=optional --omit=peer \
		--cache "$CACHE/npm" --prefer-offline --fetch-timeout=60000 --fetch-retries=2) 2>&1 |
		{ grep -v EBADENGINE || true; }
}

# mailpit_check_registry: fetch the rapidoc version the lockfile pins (into the npm
# cache); when the registry has no such version (rapidoc@12.1.0 is a 404 on the npm
# registry here) drop rapidoc. Fails fast when the registry does not answer.
mailpit_check_registry() {
	local v out
	v=$(cd "$MAILPIT_SRC" && node -p 'require("./package-lock.json").packages["node_modules/rapidoc"]?.version ?? ""') ||
		return 1
	[ -n "$v" ] || return 0
	if out=$(timeout 120 npm cache add --cache "$CACHE/npm" --fetch-timeout=30000 --fetch-retries=1 \
		--fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=10000 "rapidoc@$v" 2>&1); then
		return 0
	fi
	printf '%s\n' "$out" | grep -v '^npm error  *at ' | tail -n 12
	if grep -qE 'E404|ETARGET' <<<"$out"; then
		# Only the API docs page uses rapidoc: build the rest of the UI, exactly as locked.
		echo "== $(date +%T) rapidoc@$v is missing from the npm registry: building without the API docs viewer"
		mailpit_drop_rapidoc
		return
	fi
	echo "the npm registry did not answer (npm cache add rapidoc@$v failed)"
	return 1
}

# mailpit_drop_rapidoc: remove rapidoc from the copy's package.json and lockfile,
# and make the API docs page (server/ui/api/v1/, dist/docs.js) say so instead.
mailpit_drop_rapidoc() {
	(cd "$MAILPIT_SRC" && node -e '
		const fs = require("fs");
		const edit = (f, fn) => { const j = JSON.parse(fs.readFileSync(f)); fn(j); fs.writeFileSync(f, JSON.stringify(j, null, 2) + "\n"); };
		edit("package.json", (j) => delete j.dependencies.rapidoc);
		edit("package-lock.json", (j) => { delete j.packages[""].dependencies.rapidoc; delete j.packages["node_modules/rapidoc"]; });
		fs.writeFileSync("server/ui-src/docs.js", `document.addEventListener("DOMContentLoaded", () =>
	document.body.insertAdjacentHTML("afterbegin",
		"<p>This Mailpit build has no API docs viewer (rapidoc was missing from the npm registry): " +
		"read <a href=\\"swagger.json\\">swagger.json</a>.</p>"));
`);')
}

# mailpit_ui_build: build Mailpit with its web UI into $BIN/.mailpit.tmp (errexit
# does not apply in a function called from `if`, so every step checks itself).
mailpit_ui_build() {
	local dir src=$MAILPIT_SRC
	dir=$(cd "$TOOLS" && GOWORK=off GOFLAGS=-mod=readonly go mod download "$MAILPIT_MOD" &&
		GOWORK=off GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' "$MAILPIT_MOD") || return 1
	if [ ! -f "$dir/package-lock.json" ]; then echo "no package-lock.json in $dir"; return 1; fi
	echo "== $(date +%T) copying $dir to $src"
	rm -rf "$src" && cp -R "$dir" "$src" && chmod -R u+w "$src" || return 1
	mailpit_check_registry || return 1
	echo "== $(date +%T) npm ci (node $(node --version), npm $(npm --version))"
	mailpit_npm_ci || return 1
	echo "== $(date +%T) npm run package"
	(cd "$src" && timeout 300 npm run package) || return 1
	if [ ! -s "$src/server/ui/dist/app.js" ]; then echo "the UI build made no server/ui/dist/app.js"; return 1; fi
	echo "== $(date +%T) go build"
	go_build "$src" mailpit . -trimpath -buildvcs=false -ldflags "$MAILPIT_LDFLAGS" || return 1
	# node_modules is only needed to build (a rebuild runs npm ci afresh).
	rm -rf "$src/node_modules"
	echo "== $(date +%T) done"
}

# build_mailpit: rebuild $BIN/mailpit when the tools module or the recipe changed.
# The stamp says HASH ui, or HASH api-only after a failed UI build: that one is
# retried after a day (or at once after `rm $BIN/.mailpit.stamp`).
build_mailpit() {
	local stamp=$BIN/.mailpit.stamp want have
	# The recipe: the functions that make the binary (not the messages around them).
	want=$(tools_hash <(declare -f go_build mailpit_npm_ci mailpit_check_registry mailpit_drop_rapidoc mailpit_ui_build
		echo "$MAILPIT_LDFLAGS"))
	have=$(cat "$stamp" 2>/dev/null || true)
	if [ -x "$BIN/mailpit" ]; then
		if [ "$have" = "$want ui" ]; then return; fi
		if [ "$have" = "$want api-only" ] && [ -z "$(find "$stamp" -mmin +1440)" ]; then
			log "WARNING: Mailpit runs without its web UI: its build failed (log: $MAILPIT_UI_LOG);" \
				"it is retried a day later, or now after: rm $stamp"
			return
		fi
	fi
	command -v go >/dev/null || die "go is not on PATH"
	local pinned
	pinned=$(cd "$TOOLS" && GOWORK=off GOFLAGS=-mod=readonly go list -m -f '{{.Version}}' "$MAILPIT_MOD") ||
		die "go list -m $MAILPIT_MOD failed in $TOOLS"
	[ "$pinned" = "$MAILPIT_VERSION" ] ||
		die "deploy/tools pins $MAILPIT_MOD $pinned but stack.sh says MAILPIT_VERSION=$MAILPIT_VERSION: update stack.sh"
	mkdir -p "$BIN"
	local t0=$SECONDS
	log "building mailpit $MAILPIT_VERSION with its web UI (cold builds take a few minutes; log: $MAILPIT_UI_LOG)"
	if ! ensure_node; then
		echo "node/npm are missing and could not be installed" >"$MAILPIT_UI_LOG"
	elif mailpit_ui_build >"$MAILPIT_UI_LOG" 2>&1; then
		mv -f "$BIN/.mailpit.tmp" "$BIN/mailpit"
		echo "$want ui" >"$stamp"
		log "built mailpit with its web UI in $((SECONDS - t0))s"
		return
	fi
	tail -n 15 "$MAILPIT_UI_LOG" | sed 's/^/    /' >&2
	log "WARNING: could not build Mailpit's web UI (log: $MAILPIT_UI_LOG): Mailpit runs without it;" \
		"its HTTP API (which all the tests use) works, the browser UI does not"
	if [ -x "$BIN/mailpit" ] && [ "$have" = "$want api-only" ]; then
		# Same API-only binary as before: keep it (no restart), retry in a day.
		touch "$stamp"
		return
	fi
	go_build "$TOOLS" mailpit "$MAILPIT_MOD" -trimpath -ldflags "$MAILPIT_LDFLAGS" >&2 ||
		die "go build $MAILPIT_MOD failed"
	mv -f "$BIN/.mailpit.tmp" "$BIN/mailpit"
	echo "$want api-only" >"$stamp"
	log "built mailpit without its web UI in $((SECONDS - t0))s"
}

build_tools() {
	build ferretdb ./ferretdb -trimpath
	build_mailpit
}

# alive NAME: the process from $RUN/NAME.pid still runs our binary.
alive() {
	local pid
	pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
		[ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)" = "$BIN/$1" ]
}

# restart_if_rebuilt NAME: stop a live instance whose binary was rebuilt since it started.
restart_if_rebuilt() {
	alive "$1" || return 0
	case $(readlink "/proc/$(cat "$RUN/$1.pid")/exe" 2>/dev/null) in
	*" (deleted)") log "$1 was rebuilt: restarting it"; stop_pidfile "$1" ;;
	esac
}

# start NAME ARGS...: run $BIN/NAME in the background in its own session.
start() {
	local name=$1; shift
	setsid "$BIN/$name" "$@" >"$RUN/$name.log" 2>&1 </dev/null 9>&- &
	echo $! >"$RUN/$name.pid"
}

# A real MongoDB round trip: OP_MSG {ping: 1, $db: "admin"} must answer ok: 1.0.
mongo_ping() {
	timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 &&
		printf '\\x33\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\xdd\\x07\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x1e\\x00\\x00\\x00\\x10ping\\x00\\x01\\x00\\x00\\x00\\x02\$db\\x00\\x06\\x00\\x00\\x00admin\\x00\\x00' >&3 &&
		dd bs=4096 count=1 <&3 2>/dev/null | od -An -v -tx1" 2>/dev/null | tr -d ' \n' | grep -q '016f6b00000000000000f03f'
}

ensure_ferretdb() {
	restart_if_rebuilt ferretdb
	if alive ferretdb; then
		FERRETDB_PORT=$(cat "$RUN/ferretdb.port")
		note ferretdb "reusing pid $(cat "$RUN/ferretdb.pid") on 127.0.0.1:$FERRETDB_PORT"
	else
		FERRETDB_PORT=$(pick_port FERRETDB_PORT 27018)
		start ferretdb -listen-addr "127.0.0.1:$FERRETDB_PORT" -postgresql-url "$POSTGRES_URL"
		echo "$FERRETDB_PORT" >"$RUN/ferretdb.port"
		note ferretdb "started pid $(cat "$RUN/ferretdb.pid") on 127.0.0.1:$FERRETDB_PORT (PostgreSQL $FERRETDB_PG_DB)"
	fi
	proc=ferretdb wait_until 30 "FerretDB on 127.0.0.1:$FERRETDB_PORT" mongo_ping "$FERRETDB_PORT"
}

mailpit_ready() { curl -fsS -m 2 "http://127.0.0.1:$MAILPIT_HTTP_PORT/readyz" >/dev/null; }

ensure_mailpit() {
	command -v curl >/dev/null || apt_install curl
	restart_if_rebuilt mailpit
	if alive mailpit; then
		read -r MAILPIT_SMTP_PORT MAILPIT_HTTP_PORT <"$RUN/mailpit.port"
		note mailpit "reusing pid $(cat "$RUN/mailpit.pid"): SMTP 127.0.0.1:$MAILPIT_SMTP_PORT, HTTP 127.0.0.1:$MAILPIT_HTTP_PORT"
	else
		MAILPIT_SMTP_PORT=$(pick_port MAILPIT_SMTP_PORT 1025)
		MAILPIT_HTTP_PORT=$(pick_port MAILPIT_HTTP_PORT 8025)
		# Accept any (or no) credentials over plain SMTP, so the notification service
		# works here whether or not SMTP_USERNAME/GMAIL_ADDRESS are set.
		start mailpit --smtp "127.0.0.1:$MAILPIT_SMTP_PORT" --listen "127.0.0.1:$MAILPIT_HTTP_PORT" \
			--database "$RUN/mailpit.db" --smtp-auth-accept-any --smtp-auth-allow-insecure \
			--smtp-disable-rdns --disable-version-check
		echo "$MAILPIT_SMTP_PORT $MAILPIT_HTTP_PORT" >"$RUN/mailpit.port"
		note mailpit "started pid $(cat "$RUN/mailpit.pid"): SMTP 127.0.0.1:$MAILPIT_SMTP_PORT, HTTP 127.0.0.1:$MAILPIT_HTTP_PORT"
	fi
	proc=mailpit wait_until 30 "Mailpit on 127.0.0.1:$MAILPIT_HTTP_PORT" mailpit_ready
}

# ensure_chromium: with MP3_NEED_CHROMIUM=1 install Debian's chromium when missing;
# CHROMIUM_PATH is the browser when installed (for browser tests), else empty.
ensure_chromium() {
	if [ "${MP3_NEED_CHROMIUM:-0}" = 1 ] && ! command -v chromium >/dev/null; then apt_install chromium; fi
	CHROMIUM_PATH=$(command -v chromium || true)
	if [ -n "$CHROMIUM_PATH" ]; then note chromium "$CHROMIUM_PATH"; fi
}

write_env() {
	local tmp=$ENVFILE.tmp kv
	: >"$tmp"
	for kv in \
		MYSQL_HOST=127.0.0.1 MYSQL_PORT="$MYSQL_PORT" MYSQL_USER="$MYSQL_USER" MYSQL_PASSWORD="$MYSQL_PASSWORD" \
		RABBITMQ_URL="amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/" RABBITMQ_MGMT_URL="$RABBITMQ_MGMT_URL" \
		MONGODB_URI="mongodb://127.0.0.1:$FERRETDB_PORT/" \
		SMTP_HOST=127.0.0.1 SMTP_PORT="$MAILPIT_SMTP_PORT" SMTP_TLS=none \
		MAILPIT_URL="http://127.0.0.1:$MAILPIT_HTTP_PORT" \
		FFMPEG_PATH="$FFMPEG_PATH" FFPROBE_PATH="$FFPROBE_PATH" \
		POSTGRES_URL="$POSTGRES_URL" MP3_RUN_DIR="$RUN" MP3_TOOLS_BIN="$BIN" \
		CHROMIUM_PATH="$CHROMIUM_PATH"; do
		# RABBITMQ_MGMT_URL only when the management plugin answers, CHROMIUM_PATH
		# only when chromium is installed.
		case $kv in RABBITMQ_MGMT_URL= | CHROMIUM_PATH=) continue ;; esac
		printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}" >>"$tmp"
	done
	mv -f "$tmp" "$ENVFILE"
}

# ---------------------------------------------------------------- commands

stop_pidfile() {
	local name=$1 pid
	alive "$name" || { rm -f "$RUN/$name.pid"; return; }
	pid=$(cat "$RUN/$name.pid")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
	if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
	rm -f "$RUN/$name.pid"
	log "stopped $name (pid $pid)"
}

cmd_build() { build_tools; }

cmd_up() {
	local t0=$SECONDS
	ensure_mysql
	ensure_rabbitmq
	ensure_postgres
	ensure_ffmpeg
	ensure_python_peers
	ensure_chromium
	build_tools
	ensure_ferretdb
	ensure_mailpit
	write_env
	note env "$ENVFILE"
	printf 'stack up in %ss:\n' "$((SECONDS - t0))"
	printf '  %s\n' "${summary[@]}"
}

cmd_down() {
	stop_pidfile ferretdb
	stop_pidfile mailpit
	rm -f "$ENVFILE"
	if [ -e "$RUN/started-mariadb" ]; then
		as_root start-stop-daemon --stop --oknodo --retry TERM/30/KILL/5 --pidfile "$RUN/mariadb.pid" >&2 || true
		rm -f "$RUN/started-mariadb" "$RUN/mariadb.pid"
		log "stopped MariaDB"
	fi
	if [ -e "$RUN/started-rabbitmq" ]; then
		as_root timeout 60 rabbitmqctl -q shutdown >&2 || log "warning: rabbitmqctl shutdown failed"
		rm -f "$RUN/started-rabbitmq"
		log "stopped RabbitMQ"
	fi
	if [ -e "$RUN/started-postgresql" ]; then
		as_root pg_ctlcluster --skip-systemctl-redirect "$(cat "$RUN/started-postgresql")" main stop >&2 ||
			log "warning: pg_ctlcluster stop failed"
		rm -f "$RUN/started-postgresql"
		log "stopped PostgreSQL"
	fi
}

main() {
	local cmd=${1:-}
	case $cmd in
	up | down | build) ;;
	env)
		[ -f "$ENVFILE" ] || die "no env file: run deploy/stack.sh up"
		echo "$ENVFILE"
		return
		;;
	*) die "usage: $0 up|down|env|build" ;;
	esac
	mkdir -p "$RUN"
	# One up/down at a time (parallel `make test` runs share the stack).
	exec 9>"$RUN/.lock"
	flock -w 900 9 || die "another deploy/stack.sh holds $RUN/.lock"
	"cmd_$cmd"
}

main "$@"
