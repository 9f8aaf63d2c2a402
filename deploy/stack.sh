#!/usr/bin/env bash
# The local stack for `make test` and `make run`: the real servers the services
# talk to (README.md, "The two commands"; docs/architecture.md).
#
#   deploy/stack.sh up     ensure MariaDB, RabbitMQ, PostgreSQL, ffmpeg and the original's
#                          libraries for Debian's /usr/bin/python3 (pymongo, gridfs, pika,
#                          PyJWT: see ensure_python_peers), installing Debian packages
#                          when missing; log in as a dedicated account (see
#                          "accounts"); build FerretDB and Mailpit (with its web UI:
#                          see mailpit_ui) from deploy/tools when stale, start them,
#                          write $RUN/env
#                          (restarting FerretDB/Mailpit when their binary was rebuilt)
#   deploy/stack.sh down   stop what `up` started (and only that)
#   deploy/stack.sh env    print the path of the env file (`. "$(deploy/stack.sh env)"`)
#   deploy/stack.sh build  only build the pinned tools into the cache
#
# Idempotent: a second `up` reuses live servers and cached binaries.
#
# Environment (all optional):
#   MP3_CACHE_DIR (REPO/.cache)  built tools in $MP3_CACHE_DIR/bin, survives `down`;
#       also Mailpit's web UI build (mailpit-src/, npm/, mailpit-ui.log), see mailpit_ui
#   MP3_RUN_DIR   (REPO/.run)    pidfiles, logs, Mailpit data, the env file
#   MYSQL_PORT (3306); MYSQL_USER and MYSQL_PASSWORD: an account of yours to use
#       instead of mp3dev (see "accounts")
#   MP3_CREDENTIALS (~/.local/state/mp3converter/credentials) mp3dev's password
#   RABBITMQ_PORT (5672)  RABBITMQ_MANAGEMENT=1 enables the management plugin
#   POSTGRES_PORT (5432)  FERRETDB_PG_DB (mp3_ferretdb)
#   FERRETDB_PORT (27018) MAILPIT_SMTP_PORT (1025) MAILPIT_HTTP_PORT (8025):
#       when unset and the default is taken, the next free port is used.
#   FERRETDB_INDEXED=1  give FerretDB's tables the indexes its queries can use
#       (see index_ferretdb): to measure what a server with MongoDB's indexes
#       does; unset, they are stock (new tables only, either way).
#   MP3_NEED_CHROMIUM=1  install Debian's chromium when missing (browser tests);
#       CHROMIUM_PATH is exported in the env file whenever chromium is installed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$REPO/deploy/tools
CACHE=${MP3_CACHE_DIR:-$REPO/.cache}
BIN=$CACHE/bin
RUN=${MP3_RUN_DIR:-$REPO/.run}
ENVFILE=$RUN/env
MAILPIT_VERSION=$(awk '$1 == "github.com/axllent/mailpit" { print $2 }' "$TOOLS/go.mod")

MYSQL_PORT=${MYSQL_PORT:-3306}
MYSQL_PASSWORD=${MYSQL_PASSWORD:-}
RABBITMQ_PORT=${RABBITMQ_PORT:-5672}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
FERRETDB_PG_DB=${FERRETDB_PG_DB:-mp3_ferretdb}

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

# ---------------------------------------------------------------- accounts

# The tests and `make run` log in to MariaDB and PostgreSQL as a dedicated
# account, mp3dev, with a password made once per machine and kept in
# $CREDS (mode 600; every checkout on the machine shares it, so that two
# checkouts do not reset each other's password). The accounts are made
# through the servers' own administrator login over the unix socket (root
# for MariaDB, postgres for PostgreSQL: Debian's defaults); no server's
# authentication is loosened.
CREDS=${MP3_CREDENTIALS:-${XDG_STATE_HOME:-$HOME/.local/state}/mp3converter/credentials}
DEV_USER=mp3dev

dev_password() {
	if [ ! -s "$CREDS" ]; then
		mkdir -p "$(dirname "$CREDS")"
		(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$CREDS.tmp" && mv -f "$CREDS.tmp" "$CREDS")
	fi
	cat "$CREDS"
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
	if ! tcp_open "$MYSQL_PORT"; then
		[ -n "$(mariadbd_bin)" ] || apt_install mariadb-server mariadb-client
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
	if [ -z "${MYSQL_USER:-}" ]; then
		MYSQL_USER=$DEV_USER MYSQL_PASSWORD=$(dev_password)
		if ! mysql_ok; then
			log "creating MariaDB account $MYSQL_USER (as root over the unix socket)"
			local u
			for u in "'$MYSQL_USER'@'localhost'" "'$MYSQL_USER'@'127.0.0.1'"; do
				# Tests create databases and accounts (auth's read-only checks).
				echo "CREATE USER IF NOT EXISTS $u; ALTER USER $u IDENTIFIED BY '$MYSQL_PASSWORD';
					GRANT ALL PRIVILEGES ON *.* TO $u WITH GRANT OPTION;"
			done | as_root "$(mysql_cli)" -uroot ||
				die "could not create the MariaDB account $MYSQL_USER as root over the unix socket;" \
					"create one yourself and set MYSQL_USER and MYSQL_PASSWORD"
		fi
	fi
	wait_until 20 "MariaDB login as $MYSQL_USER@127.0.0.1:$MYSQL_PORT" mysql_ok
	note mysql "$how on 127.0.0.1:$MYSQL_PORT (account $MYSQL_USER)"
}

# ---------------------------------------------------------------- RabbitMQ

# amqp_ok: a real AMQP login (pika, the original's client) as guest.
amqp_ok() {
	/usr/bin/python3 -E -s -c 'import pika, sys
pika.BlockingConnection(pika.URLParameters(sys.argv[1])).close()' \
		"amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/?connection_attempts=1&socket_timeout=2&blocked_connection_timeout=2"
}

ensure_rabbitmq() {
	if amqp_ok 2>/dev/null; then
		note rabbitmq "using running server on 127.0.0.1:$RABBITMQ_PORT"
	else
		command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
		# apt may have started it already (sysv init inside containers).
		if ! amqp_ok 2>/dev/null && ! proc_running '[b]eam.*rabbit'; then
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

# ---------------------------------------------------------------- PostgreSQL (FerretDB's storage)

pg_version() { find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -1; }
pg_ready() { pg_isready -q -h 127.0.0.1 -p "$POSTGRES_PORT" -t 2; }
# pg_dev SQL: as mp3dev over TCP, with its password.
pg_dev() {
	PGPASSWORD=$(dev_password) PGCONNECT_TIMEOUT=3 psql -w -X -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$DEV_USER" \
		-d "$FERRETDB_PG_DB" -v ON_ERROR_STOP=1 -tAc "$1"
}
# pg_admin: psql as postgres over the unix socket (peer authentication), SQL on stdin.
pg_admin() { as_root su postgres -s /bin/sh -c "cd / && psql -X -q -p $POSTGRES_PORT -d postgres -v ON_ERROR_STOP=1"; }

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
	# FerretDB keeps its data in database $FERRETDB_PG_DB, owned by mp3dev.
	if ! pg_dev 'select 1' >/dev/null 2>&1; then
		log "creating PostgreSQL role $DEV_USER and database $FERRETDB_PG_DB (as postgres over the unix socket)"
		pg_admin <<-SQL >/dev/null || die "could not create PostgreSQL role $DEV_USER (as user postgres)"
			SELECT 'CREATE ROLE $DEV_USER LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DEV_USER')\gexec
			ALTER ROLE $DEV_USER PASSWORD '$(dev_password)';
			SELECT 'CREATE DATABASE "$FERRETDB_PG_DB" OWNER $DEV_USER'
				WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$FERRETDB_PG_DB')\gexec
		SQL
		wait_until 10 "PostgreSQL login as $DEV_USER@127.0.0.1:$POSTGRES_PORT" pg_dev 'select 1'
	fi
	POSTGRES_URL=postgres://$DEV_USER:$(dev_password)@127.0.0.1:$POSTGRES_PORT/$FERRETDB_PG_DB
	index_ferretdb
}

# index_ferretdb: with FERRETDB_INDEXED=1, an event trigger in FerretDB's
# database gives each table it creates GIN indexes on _id (every
# collection) and on files_id and n (GridFS chunks). FerretDB 1.x sends an
# equality filter as `_jsonb->'field' @> value`, which its own btree
# indexes cannot serve: every chunk lookup scans the whole collection
# (270 ms on a 300 MB one), where MongoDB uses its {files_id, n} index.
# With these, such lookups take a millisecond, as on MongoDB; ranges are
# still filtered by FerretDB itself. For benchmarks: the services are the
# same either way. Without it, the trigger is removed.
index_ferretdb() {
	local sql
	if [ "${FERRETDB_INDEXED:-}" = 1 ]; then
		sql=$(cat <<-'SQL'
			CREATE OR REPLACE FUNCTION mp3_index_ferretdb() RETURNS event_trigger LANGUAGE plpgsql AS $$
			DECLARE t record;
			BEGIN
				FOR t IN SELECT object_identity AS name FROM pg_event_trigger_ddl_commands()
						WHERE command_tag = 'CREATE TABLE' AND object_identity NOT LIKE '%._ferretdb_%' LOOP
					EXECUTE format('CREATE INDEX ON %s USING gin ((_jsonb->''_id''))', t.name);
					IF t.name LIKE '%\_chunks\_%' THEN
						EXECUTE format('CREATE INDEX ON %s USING gin ((_jsonb->''files_id''))', t.name);
						EXECUTE format('CREATE INDEX ON %s USING gin ((_jsonb->''n''))', t.name);
					END IF;
				END LOOP;
			END $$;
			DROP EVENT TRIGGER IF EXISTS mp3_index_ferretdb;
			CREATE EVENT TRIGGER mp3_index_ferretdb ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
				EXECUTE FUNCTION mp3_index_ferretdb();
		SQL
		)
		note indexes "FerretDB's new tables get GIN indexes (FERRETDB_INDEXED=1)"
	else
		sql='DROP EVENT TRIGGER IF EXISTS mp3_index_ferretdb;'
	fi
	as_root su postgres -s /bin/sh -c "cd / && psql -X -q -p $POSTGRES_PORT -d $FERRETDB_PG_DB -v ON_ERROR_STOP=1" \
		<<<"SET client_min_messages = warning; $sql" >/dev/null || die "could not set FerretDB's indexes (FERRETDB_INDEXED)"
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

# Mailpit's Go module has its web UI's sources but not the built bundle, so
# `go build` alone gives a Mailpit that serves the HTTP API only (all the
# tests need). mailpit_ui builds the bundle as upstream does (npm ci from the
# module's lockfile, npm run package), then the binary. rapidoc, which only
# the API docs page uses, is left out: the lockfile's version is missing
# from the npm registry here. When npm or the registry fail, the API-only
# binary is built and the UI is tried again a day later.
MAILPIT_MOD=github.com/axllent/mailpit
MAILPIT_LDFLAGS="-X $MAILPIT_MOD/config.Version=$MAILPIT_VERSION"
MAILPIT_LOG=$CACHE/mailpit-ui.log

mailpit_ui() {
	local src=$CACHE/mailpit-src dir
	{ command -v npm >/dev/null || (apt_install nodejs npm); } &&
		dir=$(cd "$TOOLS" && GOWORK=off GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' "$MAILPIT_MOD") &&
		rm -rf "$src" && cp -R "$dir" "$src" && chmod -R u+w "$src" && cd "$src" &&
		node -e 'const fs = require("fs"), edit = (f, fn) => { const j = JSON.parse(fs.readFileSync(f)); fn(j); fs.writeFileSync(f, JSON.stringify(j)); };
			edit("package.json", (j) => delete j.dependencies.rapidoc);
			edit("package-lock.json", (j) => { delete j.packages[""].dependencies.rapidoc; delete j.packages["node_modules/rapidoc"]; });
			fs.writeFileSync("server/ui-src/docs.js", "document.body.append(\"This build has no API docs viewer: see swagger.json\");\n");' &&
		timeout 900 npm ci --no-audit --no-fund --ignore-scripts --include=dev --include=optional --omit=peer \
			--cache "$CACHE/npm" --prefer-offline --fetch-timeout=60000 --fetch-retries=2 &&
		timeout 300 npm run package && [ -s server/ui/dist/app.js ] &&
		go_build "$src" mailpit . -trimpath -buildvcs=false -ldflags "$MAILPIT_LDFLAGS" && rm -rf node_modules
}

build_mailpit() {
	local stamp=$BIN/.mailpit.stamp want have kind=ui t0=$SECONDS
	want=$(tools_hash <(declare -f go_build mailpit_ui; echo "$MAILPIT_LDFLAGS"))
	have=$(cat "$stamp" 2>/dev/null || true)
	if [ -x "$BIN/mailpit" ] && { [ "$have" = "$want ui" ] ||
		{ [ "$have" = "$want api" ] && [ -z "$(find "$stamp" -mmin +1440)" ]; }; }; then return; fi
	mkdir -p "$BIN"
	log "building mailpit $MAILPIT_VERSION with its web UI (a few minutes cold; log: $MAILPIT_LOG)"
	if ! (mailpit_ui) >"$MAILPIT_LOG" 2>&1; then
		log "WARNING: Mailpit's web UI did not build (log: $MAILPIT_LOG): its HTTP API works, the browser UI does not"
		go_build "$TOOLS" mailpit "$MAILPIT_MOD" -trimpath -ldflags "$MAILPIT_LDFLAGS" >&2 || die "go build $MAILPIT_MOD failed"
		kind=api
	fi
	mv -f "$BIN/.mailpit.tmp" "$BIN/mailpit"
	echo "$want $kind" >"$stamp"
	log "built mailpit ($kind) in $((SECONDS - t0))s"
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

# mongo_ping PORT: a real MongoDB round trip (pymongo, the original's client).
mongo_ping() {
	/usr/bin/python3 -E -s -c 'import pymongo, sys
pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=2000, connectTimeoutMS=2000).admin.command("ping")' \
		"mongodb://127.0.0.1:$1/"
}

ensure_ferretdb() {
	restart_if_rebuilt ferretdb
	# The storage URL is in the environment (it holds a password), not on
	# the command line; a changed one (another FERRETDB_PG_DB) restarts.
	local url_hash; url_hash=$(sha256sum <<<"$POSTGRES_URL" | cut -d' ' -f1)
	if alive ferretdb && [ "$(cat "$RUN/ferretdb.url" 2>/dev/null)" != "$url_hash" ]; then
		log "FerretDB's storage changed: restarting it"
		stop_pidfile ferretdb
	fi
	if alive ferretdb; then
		FERRETDB_PORT=$(cat "$RUN/ferretdb.port")
		note ferretdb "reusing pid $(cat "$RUN/ferretdb.pid") on 127.0.0.1:$FERRETDB_PORT"
	else
		FERRETDB_PORT=$(pick_port FERRETDB_PORT 27018)
		FERRETDB_POSTGRESQL_URL=$POSTGRES_URL start ferretdb -listen-addr "127.0.0.1:$FERRETDB_PORT"
		echo "$FERRETDB_PORT" >"$RUN/ferretdb.port"
		echo "$url_hash" >"$RUN/ferretdb.url"
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
		MP3_RUN_DIR="$RUN" MP3_TOOLS_BIN="$BIN" \
		CHROMIUM_PATH="$CHROMIUM_PATH" FERRETDB_INDEXED="${FERRETDB_INDEXED:-}"; do
		# RABBITMQ_MGMT_URL only when the management plugin answers, CHROMIUM_PATH
		# only when chromium is installed, FERRETDB_INDEXED only when set (the
		# benchmarks print it).
		case $kv in RABBITMQ_MGMT_URL= | CHROMIUM_PATH= | FERRETDB_INDEXED=) continue ;; esac
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
	ensure_python_peers # first: the RabbitMQ and FerretDB checks use pika and pymongo
	ensure_mysql
	ensure_rabbitmq
	ensure_postgres
	ensure_ffmpeg
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
