"""What the benchmark scripts share: starting `telework` processes, waiting for them, the report."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_telework(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m telework ARGS`` as a child process, its output in ``log_path``."""
    out = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "telework", *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
    )


async def wait_ready(port: int, timeout: float = 30.0) -> None:
    """Until the gateway on ``port`` answers ``/readyz`` with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
            line = await reader.readline()
            writer.close()
            if b" 200 " in line:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"gateway on port {port} not ready within {timeout}s")


def print_result(result: dict[str, object]) -> None:
    """The figures as a table, then the one line ``RESULT {json}``."""
    width = max(len(k) for k in result)
    print(f"{'figure':<{width}}  value")
    print(f"{'-' * width}  -----")
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print("RESULT " + json.dumps(result))


def stop_processes(procs: list[subprocess.Popen[bytes]], grace_s: float = 20.0) -> None:
    """SIGTERM every child, then wait; kill what outlives the grace period."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
