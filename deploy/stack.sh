#!/usr/bin/env bash
# The local stack for `make test` and `make run`: the real servers the services
# talk to (see ARCHITECTURE.md, "Real components").
#
#   deploy/stack.sh up     ensure MariaDB, RabbitMQ, PostgreSQL and ffmpeg (installing
#                          Debian packages when missing), build FerretDB and Mailpit
#                          from deploy/tools when stale, start them, write $RUN/env
#   deploy/stack.sh down   stop what `up` started (and only that)
#   deploy/stack.sh env    print the path of the env file (`. "$(deploy/stack.sh env)"`)
#   deploy/stack.sh build  only build the pinned tools into the cache
#
# Idempotent: a second `up` reuses live servers and cached binaries.
#
# Environment (all optional):
#   MP3_CACHE_DIR (REPO/.cache)  built tools in $MP3_CACHE_DIR/bin, survives `down`
#   MP3_RUN_DIR   (REPO/.run)    pidfiles, logs, Mailpit data, the env file
#   MYSQL_PORT (3306) MYSQL_USER (root) MYSQL_PASSWORD ('')
#   RABBITMQ_PORT (5672)  RABBITMQ_MANAGEMENT=1 enables the management plugin
#   POSTGRES_PORT (5432)  FERRETDB_PG_DB (ferretdb)
#   FERRETDB_PORT (27018) MAILPIT_SMTP_PORT (1025) MAILPIT_HTTP_PORT (8025):
#       when unset and the default is taken, the next free port is used.
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

# ---------------------------------------------------------------- pinned tools

# tools_hash [FILES]: what a build depends on (Go version, the module, FILES).
tools_hash() {
	{
		go env GOVERSION GOOS GOARCH
		cat "$TOOLS/go.mod" "$TOOLS/go.sum" "$TOOLS/tools.go" "$@"
	} | sha256sum | cut -d' ' -f1
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
	(cd "$TOOLS" && GOWORK=off GOFLAGS=-mod=readonly timeout 900 go build "$@" -o "$BIN/.$name.tmp" "$pkg") >&2 ||
		die "go build $pkg failed"
	mv -f "$BIN/.$name.tmp" "$BIN/$name"
	echo "$want" >"$stamp"
	log "built $name in $((SECONDS - t0))s"
}

build_tools() {
	build ferretdb ./ferretdb -trimpath
	build mailpit github.com/axllent/mailpit -trimpath \
		-ldflags "-X github.com/axllent/mailpit/config.Version=$MAILPIT_VERSION"
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
		POSTGRES_URL="$POSTGRES_URL" MP3_RUN_DIR="$RUN" MP3_TOOLS_BIN="$BIN"; do
		# RABBITMQ_MGMT_URL only when the management plugin answers.
		[ "$kv" = RABBITMQ_MGMT_URL= ] && continue
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
