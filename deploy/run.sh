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
export MAIL_FROM=${MAIL_FROM:-mp3converter@localhost}
# One-click download links in the emails (the gateway verifies what the notification signs).
export DOWNLOAD_LINK_KEY=${DOWNLOAD_LINK_KEY:-dev-only-download-link-key-change-me-0123456789}
AUTH_PORT=${AUTH_PORT:-5000}
GATEWAY_PORT=${GATEWAY_PORT:-8080}
GATEWAY_OPS_PORT=${GATEWAY_OPS_PORT:-9080}
CONVERTER_PORT=${CONVERTER_PORT:-8081}
NOTIFICATION_PORT=${NOTIFICATION_PORT:-8082}
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

bin/auth migrate >"$logs/auth-migrate.log" 2>&1 || { cat "$logs/auth-migrate.log" >&2; exit 1; }
printf '%s\n' "$DEMO_PASSWORD" | bin/auth user add --email "$DEMO_EMAIL" >/dev/null
start auth "$AUTH_PORT" bin/auth
export AUTH_SVC_ADDRESS=127.0.0.1:$AUTH_PORT
export PUBLIC_URL=${PUBLIC_URL:-http://127.0.0.1:$GATEWAY_PORT}
OPS_PORT=$GATEWAY_OPS_PORT start gateway "$GATEWAY_PORT" bin/gateway
if [ -x bin/converter ]; then start converter "$CONVERTER_PORT" bin/converter; fi
if [ -x bin/notification ]; then start notification "$NOTIFICATION_PORT" bin/notification; fi

gw=http://127.0.0.1:$GATEWAY_PORT
cat <<MSG

The suite is up: ${names[*]} (logs in $logs/).
  gateway:        $gw
  demo user:      $DEMO_EMAIL / $DEMO_PASSWORD
  Mailpit inbox:  $MAILPIT_URL
  gateway ops:    http://127.0.0.1:$GATEWAY_OPS_PORT/readyz, /metrics

Log in (keeps the JWT in \$TOKEN):
  TOKEN=\$(curl -s -X POST -u '$DEMO_EMAIL:$DEMO_PASSWORD' $gw/login)

Upload a video (any video file; the Location header names the job):
  curl -i -X POST -H "Authorization: Bearer \$TOKEN" -F "file=@video.mp4" $gw/upload

Watch the job, then download the MP3 (its id is in the email and in the job's mp3_fid):
  curl -H "Authorization: Bearer \$TOKEN" $gw/jobs
  curl -H "Authorization: Bearer \$TOKEN" -o song.mp3 "$gw/download?fid=<mp3_fid>"

No video at hand? Make one:
  ffmpeg -f lavfi -i testsrc=duration=10:size=640x360:rate=25 -f lavfi -i sine=frequency=440:duration=10 -shortest -pix_fmt yuv420p video.mp4

Press Ctrl-C to stop.
MSG

# Exit (and stop the rest) as soon as any service dies.
wait -n "${pids[@]}"
echo "a service exited; see $logs/" >&2
exit 1
