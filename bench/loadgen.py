"""An open-loop (paced) HTTP/1.1 load generator for the benchmarks: ``bench/loadgen.c``,
compiled on first use, and a wrapper that runs it and returns its JSON.

Why our own: a load generator written in Python takes a core of the 2 the benchmarks run on,
and Debian's ``wrk`` is closed-loop only. A closed-loop client sends a request when the last
one is answered and measures from that send, so when the server stalls, the client stalls
with it and the requests it *should* have sent meanwhile are never measured (coordinated
omission): the percentiles hide the backlog. ``loadgen`` is one C thread on epoll with
keep-alive connections and two modes:

* ``rate > 0``, open loop: request *k* is due at ``t0 + k / rate``; it goes out on an idle
  connection, or waits in a FIFO for the next connection that becomes idle. Latency counts
  from the time the request was **due**, so a server falling behind shows in the
  percentiles, and sends more than 1 ms after their due time are counted (``late_sends``).
* ``rate == 0``, saturated (closed loop): each connection sends its next request as soon as
  its response is read; latency counts from the send. That measures the most the server
  answers per second; the latency there is mostly queueing (connections ÷ rate).

Usage::

    from bench import loadgen

    result = loadgen.run(
        port=8000,
        path="/v1/entitlements/check",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        bodies=[json.dumps({"customer": c, "feature": "tokens"}) for c in customers],
        connections=16,
        rate=2000,  # 0 = saturated
        seconds=10,
    )
    print(result["rate"], result["p50_us"], result["p99_us"])

The result (one JSON object printed by the generator): ``requests`` answered in the measured
window (after ``warmup``), ``errors`` (non-2xx answers plus requests whose connection broke),
``status`` (counts per class: ``1xx`` … ``5xx``, ``other``), ``socket_errors`` (failed
connects, connections closed or reset by the server), ``seconds``, ``rate`` (answered per
second), ``target_rate``, ``late_sends``, ``connections``, ``queued_at_end`` and
``in_flight_at_end`` (not counted), and the exact latency percentiles ``p50_us``,
``p90_us``, ``p99_us``, ``p999_us``, ``max_us`` in microseconds (``None`` when nothing was
answered). Request bodies cycle per connection, each connection starting at a different
offset; each body is one non-empty line.

From a shell: ``python bench/loadgen.py`` prints the path of the compiled binary (``--help``
on it lists the options).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().with_name("loadgen.c")


class LoadgenError(RuntimeError):
    """The generator could not be built or did not run to the end."""


def compiler() -> str | None:
    """The C compiler to use (``$CC``, ``cc`` or ``gcc``), or None."""
    for candidate in (os.environ.get("CC"), "cc", "gcc"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def build() -> Path:
    """Compile ``loadgen.c`` into a cache directory named after the source's hash (once)."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    binary = Path(tempfile.gettempdir()) / f"tallybook-loadgen-{digest}" / "loadgen"
    if binary.exists():
        return binary
    cc = compiler()
    if cc is None:
        raise LoadgenError("no C compiler found (cc or gcc; set $CC): cannot build bench/loadgen.c")
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so concurrent builds never see a half-written file.
    partial = binary.with_name(f"loadgen.{os.getpid()}.partial")
    built = subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-o", str(partial), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        partial.unlink(missing_ok=True)
        raise LoadgenError(f"{cc} failed on {SOURCE}:\n{built.stderr}")
    partial.replace(binary)
    return binary


def command(
    *,
    port: int,
    path: str,
    headers: dict[str, str],
    bodies_file: Path | None,
    connections: int,
    rate: float,
    seconds: float,
    warmup: float = 1.0,
    host: str = "127.0.0.1",
    method: str = "POST",
    seed: int = 1,
) -> list[str]:
    """The generator's command line (builds it if needed)."""
    args = [
        str(build()),
        f"--host={host}",
        f"--port={port}",
        f"--path={path}",
        f"--method={method}",
        f"--connections={connections}",
        f"--rate={rate}",
        f"--seconds={seconds}",
        f"--warmup={warmup}",
        f"--seed={seed}",
    ]
    for name, value in headers.items():
        args.append(f"--header={name}: {value}")
    if bodies_file is not None:
        args.append(f"--bodies={bodies_file}")
    return args


def run(
    *,
    port: int,
    path: str,
    headers: dict[str, str],
    bodies: list[str] | None,
    connections: int,
    rate: float,
    seconds: float,
    warmup: float = 1.0,
    host: str = "127.0.0.1",
    method: str = "POST",
    seed: int = 1,
) -> dict[str, Any]:
    """Run the generator (``rate=0``: saturated) and return its parsed JSON result."""
    with tempfile.TemporaryDirectory(prefix="tallybook-loadgen-") as scratch:
        bodies_file = None
        if bodies is not None:
            if not bodies or any(not body or "\n" in body or "\r" in body for body in bodies):
                raise ValueError("bodies must be non-empty, each a non-empty single line")
            bodies_file = Path(scratch) / "bodies"
            bodies_file.write_text("".join(body + "\n" for body in bodies), encoding="utf-8")
        args = command(
            port=port,
            path=path,
            headers=headers,
            bodies_file=bodies_file,
            connections=connections,
            rate=rate,
            seconds=seconds,
            warmup=warmup,
            host=host,
            method=method,
            seed=seed,
        )
        finished = subprocess.run(
            args,
            capture_output=True,
            text=True,
            check=False,
            timeout=warmup + seconds + 60,
        )
    if finished.returncode != 0:
        raise LoadgenError(f"loadgen exited with {finished.returncode}: {finished.stderr.strip()}")
    result: dict[str, Any] = json.loads(finished.stdout)
    return result


if __name__ == "__main__":
    print(build())
