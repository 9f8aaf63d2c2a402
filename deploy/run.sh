#!/usr/bin/env bash
# `make run`: the suite on this machine, in the foreground. Starts the
# dependencies (deploy/stack.sh), seeds a demo user, runs every built service
# with the contract's env vars, prints how to use it; Ctrl-C stops it all.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

"$repo/deploy/stack.sh" up
# shellcheck disable=SC1091
source "${MP3_RUN_DIR:-$repo/.run}/env"
logs="$MP3_RUN_DIR/logs"
mkdir -p "$logs"

# Development values only: never use them anywhere else.
export JWT_SECRET=${JWT_SECRET:-dev-only-jwt-secret-change-me}
export MYSQL_DB=${MYSQL_DB:-auth}
AUTH_PORT=${AUTH_PORT:-5000}
DEMO_EMAIL=${DEMO_EMAIL:-demo@example.com}
DEMO_PASSWORD=${DEMO_PASSWORD:-demo-password}

pids=()
names=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping: ${names[*]:-nothing}"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

start() { # name port cmd...
  local name=$1 port=$2
  shift 2
  PORT=$port "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "$name failed to start; its log ($logs/$name.log):" >&2
      tail -n 20 "$logs/$name.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "$name did not answer on port $port within 20 s; see $logs/$name.log" >&2
  exit 1
}

printf '%s\n' "$DEMO_PASSWORD" | bin/auth user add --email "$DEMO_EMAIL" >/dev/null
start auth "$AUTH_PORT" bin/auth

cat <<MSG

The suite is up (logs in $logs/).
  auth:           http://127.0.0.1:$AUTH_PORT
  demo user:      $DEMO_EMAIL / $DEMO_PASSWORD
  Mailpit inbox:  $MAILPIT_URL

Log in (prints a JWT):
  curl -X POST -u '$DEMO_EMAIL:$DEMO_PASSWORD' http://127.0.0.1:$AUTH_PORT/login

Check a token:
  curl -X POST -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:$AUTH_PORT/validate

Press Ctrl-C to stop.
MSG

# Exit (and stop the rest) as soon as any service dies.
wait -n "${pids[@]}"
echo "a service exited; see $logs/" >&2
exit 1
