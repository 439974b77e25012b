"""A bandwidth-limited link on loopback: a pacing TCP proxy, for benchmarks only.

``ThrottledLink(target_port, rate)`` starts ``python -m benchmarks.throttle`` in a
process of its own (so its work does not compete for the measured process's GIL):
it listens on a free 127.0.0.1 port and forwards each connection to
``127.0.0.1:target_port``, every byte in each direction paced to ``rate`` bytes per
second, shared by all connections (one full-duplex link, as a network card would
be). Pacing holds each chunk back until the link would have carried it, so a
transfer of n bytes takes n / rate seconds however it is split.

It is bounded and stops by itself: both ends are loopback, at most
``MAX_CONNECTIONS`` connections at once (more are refused), 64 KiB per read with
small socket buffers, sockets idle for ``IDLE_TIMEOUT`` seconds are closed, and the
process exits when its standard input closes (the parent closed it or died), or
after ``lifetime`` seconds whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

CHUNK = 64 * 1024
#: Kernel buffers of the proxy's sockets: what the link holds beyond the pacing.
SOCKET_BUFFER = 256 * 1024
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 60.0
LIFETIME = 1800.0
LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


class Pacer:
    """One direction of the link: ``wait(n)`` returns once n more bytes may go."""

    def __init__(self, rate: float, burst: int = CHUNK) -> None:
        self._rate = rate
        self._slack = burst / rate
        self._clock = time.monotonic()
        self._lock = threading.Lock()

    def wait(self, size: int) -> None:
        with self._lock:
            now = time.monotonic()
            # An idle link has room for ``burst`` bytes at once, never more.
            self._clock = max(self._clock, now - self._slack) + size / self._rate
            delay = self._clock - now
        if delay > 0:
            time.sleep(delay)


def _pump(source: socket.socket, sink: socket.socket, pacer: Pacer) -> None:
    """Copy ``source`` to ``sink`` at the pacer's rate until either end stops."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        while count := source.recv_into(buffer):
            pacer.wait(count)
            sink.sendall(view[:count])
    except OSError:
        pass  # a reset, a timeout or the other pump's close: this direction ends
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _configure(connection: socket.socket) -> None:
    connection.settimeout(IDLE_TIMEOUT)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        connection.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


def _serve_connection(
    client: socket.socket, target: int, up: Pacer, down: Pacer
) -> None:
    try:
        upstream = socket.create_connection((LOOPBACK, target), timeout=IDLE_TIMEOUT)
    except OSError:
        client.close()
        return
    for connection in (client, upstream):
        _configure(connection)
    sending = threading.Thread(target=_pump, args=(client, upstream, up), daemon=True)
    sending.start()
    _pump(upstream, client, down)
    sending.join(IDLE_TIMEOUT)
    client.close()
    upstream.close()


def serve(listener: socket.socket, target: int, rate: float) -> None:
    """Accept connections on ``listener`` forever, forwarding each to ``target``."""
    up, down = Pacer(rate), Pacer(rate)
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    while True:
        client, _ = listener.accept()
        if not slots.acquire(blocking=False):
            client.close()
            continue

        def handle(client: socket.socket = client) -> None:
            try:
                _serve_connection(client, target, up, down)
            finally:
                slots.release()

        threading.Thread(target=handle, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throttle")
    parser.add_argument("--target", type=int, required=True, help="127.0.0.1 port")
    parser.add_argument("--rate", type=float, required=True, help="bytes per second")
    parser.add_argument("--lifetime", type=float, default=LIFETIME)
    args = parser.parse_args(argv)
    listener = socket.create_server((LOOPBACK, 0))
    threading.Thread(
        target=serve, args=(listener, args.target, args.rate), daemon=True
    ).start()
    print(listener.getsockname()[1], flush=True)
    # Until the parent closes our input (or dies), within the lifetime at most.
    watcher = threading.Thread(target=sys.stdin.read, daemon=True)
    watcher.start()
    watcher.join(args.lifetime)
    os._exit(0)  # daemon threads may be inside a blocking call: do not wait


class ThrottledLink:
    """A running link process; ``url`` is its address. Use it as a context manager."""

    def __init__(
        self, target_port: int, rate: float, *, lifetime: float = LIFETIME
    ) -> None:
        self.rate = rate
        child_env = {**os.environ}
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.throttle",
                "--target",
                str(target_port),
                "--rate",
                str(rate),
                "--lifetime",
                str(lifetime),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError("the throttling proxy did not start")
        self.port = int(line)
        self.url = f"http://{LOOPBACK}:{self.port}"

    def close(self) -> None:
        """Stop the link (its input closes; killed if it lingers)."""
        process = self._process
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> ThrottledLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
