"""Live servers for the serving tests: gunicorn or uvicorn running the test project.

``start_server(flavor, live)`` starts one on a free port of 127.0.0.1 and waits for
it; ``LiveServer`` gives its URLs, the pid that serves requests (for /proc) and a
real HTTP client connection. The project reads its storages from ``LAYERED_LIVE``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "tests.serving_project.settings"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def project_env(live: dict[str, Any], **extra: str) -> dict[str, str]:
    """Return the environment of a process of the test project."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        LAYERED_LIVE=json.dumps(live),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def migrate(live: dict[str, Any]) -> None:
    """Create the project's database (``live["db"]``)."""
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v", "0"],
        cwd=ROOT,
        env=project_env(live),
        check=True,
        timeout=120,
    )


@dataclass
class LiveServer:
    flavor: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self, method: str, url: str, headers: dict[str, str] | None = None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """Send one request on a new connection; return the response and body."""
        connection = self.connection()
        try:
            connection.request(method, url, headers=headers or {})
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    def worker_pid(self) -> int:
        """Return the pid of the process that runs Django (gunicorn's worker)."""
        if self.flavor != "gunicorn":
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for _ in range(100):
            pids = children.read_text().split()
            if pids:
                return int(pids[0])
            time.sleep(0.05)
        raise AssertionError("gunicorn started no worker")

    def status(self, field: str) -> int:
        """Return a ``/proc/PID/status`` figure of the worker, in bytes."""
        for line in Path(f"/proc/{self.worker_pid()}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc status")

    def open_files(self, under: str) -> list[str]:
        """Return the files under ``under`` that the worker has open."""
        found = []
        fds = Path(f"/proc/{self.worker_pid()}/fd")
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith(under):
                    found.append(target)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_server(flavor: str, live: dict[str, Any], log: Path) -> LiveServer:
    """Start ``flavor`` (gunicorn, WSGI with sendfile on; uvicorn, ASGI) serving the
    test project on a free port, and wait until it answers.

    A port found free can be taken before the server binds it (SeaweedFS opens
    more ports as it starts), so a server that exits at once is tried again on
    another port.
    """
    for _attempt in range(2):
        server = _start(flavor, live, log)
        if server is not None:
            return server
    server = _start(flavor, live, log)
    if server is None:
        raise AssertionError(f"{flavor} exited: {log.read_text()[-2000:]}")
    return server


def _start(flavor: str, live: dict[str, Any], log: Path) -> LiveServer | None:
    """Start one server; return None if it exited before answering."""
    port = free_port()
    if flavor == "gunicorn":
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "tests.serving_project.wsgi:application",
            f"--bind=127.0.0.1:{port}",
            "--workers=1",
            "--worker-class=sync",
            "--timeout=300",
            # sendfile is gunicorn's default; say so, since it is what is tested:
            # a body exposing the stored file's fileno would be sent as it is stored.
            "--config=python:tests.serving_project.gunicorn_conf",
        ]
    elif flavor == "uvicorn":
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.serving_project.asgi:application",
            "--host=127.0.0.1",
            f"--port={port}",
            "--lifespan=off",
            "--no-access-log",
        ]
    else:
        raise ValueError(flavor)
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=project_env(live),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(flavor, process, port, log)
    deadline = time.monotonic() + 60  # two cores shared with other work
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            return server
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"{flavor} did not start: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def running(flavor: str, live: dict[str, Any], log: Path) -> Iterator[LiveServer]:
    server = start_server(flavor, live, log)
    try:
        yield server
    finally:
        server.stop()
