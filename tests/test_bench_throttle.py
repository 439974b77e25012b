"""The benchmarks' bandwidth-limited link: it paces, stays on loopback, stops itself."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from benchmarks.throttle import ThrottledLink

PAYLOAD = 400_000
RATE = 4_000_000


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A loopback server that answers each connection with what it received."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                received = b""
                while len(received) < PAYLOAD and (part := client.recv(65536)):
                    received += part
                client.sendall(received)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def _round_trip(port: int) -> tuple[bytes, float]:
    payload = bytes(range(256)) * (PAYLOAD // 256) + bytes(PAYLOAD % 256)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(payload)
        received = b""
        while len(received) < PAYLOAD and (part := connection.recv(65536)):
            received += part
    assert received == payload
    return received, time.perf_counter() - started


def test_link_carries_bytes_no_faster_than_its_rate(echo_port: int) -> None:
    with ThrottledLink(echo_port, RATE) as link:
        assert link.url.startswith("http://127.0.0.1:")
        _, seconds = _round_trip(link.port)
    # Both directions are paced: a burst of at most 64 KiB each way goes at once.
    assert seconds >= 0.9 * (2 * PAYLOAD - 2 * 65536) / RATE


def test_link_stops_when_its_owner_closes_it(echo_port: int) -> None:
    link = ThrottledLink(echo_port, RATE)
    link.close()
    assert link._process.returncode == 0


def test_link_stops_by_itself_after_its_lifetime(echo_port: int) -> None:
    link = ThrottledLink(echo_port, RATE, lifetime=0.5)
    try:
        assert link._process.wait(10) == 0
    finally:
        link.close()
