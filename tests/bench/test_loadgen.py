"""The benchmarks' compiled load generator (``bench/loadgen.c``) against a tiny local HTTP/1.1
keep-alive server: paced and saturated, with answers of every kind it has to read (JSON with
Content-Length, 404, chunked, ``Connection: close``) and a server that drops a request."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bench import loadgen

# One body per kind of answer; the generator cycles through them on every connection.
BODIES = [
    '{"kind": "ok", "n": 1}',
    '{"kind": "ok", "n": 2}',
    '{"kind": "missing"}',
    '{"kind": "ok", "n": 3}',
    '{"kind": "chunked"}',
    '{"kind": "ok", "n": 4}',
    '{"kind": "close"}',
    '{"kind": "ok", "n": 5}',
    '{"kind": "missing"}',
    '{"kind": "ok", "n": 6}',
]
DROP = '{"kind": "drop"}'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per answer, sent at once (headers and body in separate small writes would
    # wait on the client's delayed ACK: ~40 ms per request).
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        kind = json.loads(body)["kind"] if body else "ok"
        if kind == "slow":
            time.sleep(0.1)
        if kind == "drop":
            self.close_connection = True  # hang up without answering
            return
        if kind in ("chunked", "big_chunked"):
            pieces = [b'{"chunked": ', b"true}"]
            if kind == "big_chunked":
                pieces = [b"x" * 4000 + b"\r\n"] * 60  # CRLFs inside the data too
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in pieces:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        status = 404 if kind == "missing" else 200
        answer = json.dumps({"kind": kind, "allowed": status == 200}).encode()
        if kind == "big":
            answer = b"y" * 300_000
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if kind == "close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture(scope="module")
def binary() -> Any:
    if loadgen.compiler() is None:
        if os.environ.get("CI"):
            pytest.fail("no C compiler on CI: bench/loadgen.c cannot be built")
        pytest.skip("no C compiler (cc or gcc)")
    return loadgen.build()


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the generator hangs up at the end, mid-answer: expected


@pytest.fixture
def port() -> Iterator[int]:
    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def sane_latencies(result: dict[str, Any]) -> None:
    assert 0 < result["p50_us"] <= result["p90_us"] <= result["p99_us"]
    assert result["p99_us"] <= result["p999_us"] <= result["max_us"]


def test_build_is_cached(binary: Any) -> None:
    assert binary.is_file()
    assert os.access(binary, os.X_OK)
    assert loadgen.build() == binary


def test_paced_sends_the_rate_and_counts_errors(binary: Any, port: int) -> None:
    rate, seconds = 200, 2.0
    result = loadgen.run(
        port=port,
        path="/check",
        headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        bodies=BODIES,
        connections=8,
        rate=rate,
        seconds=seconds,
        warmup=0.5,
    )
    expected = rate * seconds
    assert result["target_rate"] == rate
    assert result["seconds"] == seconds
    assert 0.6 * expected <= result["requests"] <= 1.1 * expected + 10
    # Two bodies in ten answer 404: errors are exactly those, and the rest are 2xx.
    status = result["status"]
    assert result["errors"] == status["4xx"]
    assert status["2xx"] + status["4xx"] == result["requests"]
    assert 0.1 * result["requests"] <= status["4xx"] <= 0.3 * result["requests"]
    # Chunked answers and Connection: close are read cleanly: no broken connection.
    assert result["socket_errors"] == 0
    sane_latencies(result)


def test_saturated_keeps_every_connection_busy(binary: Any, port: int) -> None:
    result = loadgen.run(
        port=port,
        path="/check",
        headers={"Content-Type": "application/json"},
        bodies=BODIES,
        connections=4,
        rate=0,
        seconds=1.0,
        warmup=0.3,
    )
    assert result["target_rate"] == 0
    assert result["late_sends"] == 0
    assert result["requests"] > 50
    assert result["rate"] == pytest.approx(result["requests"] / result["seconds"], abs=0.1)
    assert result["errors"] == result["status"]["4xx"] > 0
    assert result["socket_errors"] == 0
    sane_latencies(result)


def test_a_dropped_request_is_an_error_and_the_connection_comes_back(
    binary: Any, port: int
) -> None:
    result = loadgen.run(
        port=port,
        path="/check",
        headers={},
        bodies=[*BODIES[:4], DROP],
        connections=2,
        rate=100,
        seconds=1.0,
        warmup=0.3,
    )
    dropped = result["socket_errors"]
    assert dropped > 0
    # A dropped request is an error but not an answer; a 404 is both.
    assert result["errors"] == result["status"]["4xx"] + dropped
    assert result["requests"] == result["status"]["2xx"] + result["status"]["4xx"]
    assert result["status"]["2xx"] > 0


def test_a_stalled_server_shows_in_latency_counted_from_due_time(binary: Any, port: int) -> None:
    """One connection at 20/s (one due every 50 ms); one answer in ten takes 100 ms, so the
    request due meanwhile goes out late and its latency counts from when it was due. (Lower
    bounds only: the server's sleep guarantees them however slow the machine is.)"""
    result = loadgen.run(
        port=port,
        path="/check",
        headers={},
        bodies=['{"kind": "ok"}'] * 9 + ['{"kind": "slow"}'],
        connections=1,
        rate=20,
        seconds=1.5,
        warmup=0.2,
    )
    assert result["late_sends"] > 0
    assert result["max_us"] >= 100_000
    assert result["errors"] == 0
    sane_latencies(result)


def test_large_answers_are_read_across_many_reads(binary: Any, port: int) -> None:
    result = loadgen.run(
        port=port,
        path="/check",
        headers={},
        bodies=['{"kind": "big"}', '{"kind": "big_chunked"}', '{"kind": "ok"}'],
        connections=2,
        rate=0,
        seconds=0.5,
        warmup=0.1,
    )
    assert result["requests"] > 3
    assert result["errors"] == 0
    assert result["socket_errors"] == 0


def test_no_bodies_sends_empty_posts(binary: Any, port: int) -> None:
    result = loadgen.run(
        port=port,
        path="/",
        headers={},
        bodies=None,
        connections=2,
        rate=50,
        seconds=0.5,
        warmup=0.1,
    )
    assert result["requests"] > 0
    assert result["errors"] == 0
    assert result["status"]["2xx"] == result["requests"]


def test_bodies_must_be_single_lines(binary: Any) -> None:
    with pytest.raises(ValueError, match="single line"):
        loadgen.run(
            port=1, path="/", headers={}, bodies=['{"a":\n1}'], connections=1, rate=1, seconds=1
        )


def test_a_closed_port_is_socket_errors_not_a_crash(binary: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    free_port = server.server_address[1]
    server.server_close()
    result = loadgen.run(
        port=free_port,
        path="/",
        headers={},
        bodies=None,
        connections=2,
        rate=10,
        seconds=0.5,
        warmup=0.0,
    )
    assert result["requests"] == 0
    assert result["socket_errors"] > 0
    assert result["p99_us"] is None
