"""Test and benchmark helpers: free ports, a private Ray head, an MLflow server, run queries.

Every service binds 127.0.0.1 on a free port, runs in its own process session and is stopped
by the helper that started it, by process id (never ``ray stop``, which would stop every Ray
on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until an HTTP server answers (any status: Ray's dashboard may say 401).

    Raises:
        TimeoutError: Nothing answered within ``timeout`` seconds.
        RuntimeError: ``proc`` exited first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group ``proc`` leads, then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[dict[str, Any]]:
    """A private ``ray start --head --block`` on 127.0.0.1; yields its addresses.

    Yields:
        ``address`` (GCS, for ``ray.init``), ``dashboard`` (``http://...``, for ``ray job``),
        ``env`` (environment for the ``ray`` CLI: ``RAY_AUTH_MODE=token``, the Ray 2.60 default).
    """
    port, dashboard = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--num-cpus={num_cpus}",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
    ]
    log = open(Path(temp) / "ray_start.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_http(f"http://127.0.0.1:{dashboard}/api/version", 90, proc)
        yield {
            "address": f"127.0.0.1:{port}",
            "dashboard": f"http://127.0.0.1:{dashboard}",
            "env": env,
            "temp": temp,
        }
    finally:
        stop(proc, grace=5.0)  # `ray start --block` drains for 30 s on SIGTERM otherwise
        log.close()


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (SQLite store and artifacts in ``folder``); yields its URI."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{folder.resolve() / 'mlflow.db'}",
        "--default-artifact-root",
        str((folder / "artifacts").resolve()),
        "--workers",
        "1",
    ]
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", 90, proc)
        yield uri
    finally:
        stop(proc)
        log.close()


def sweep_runs(tracking_uri: str, experiment: str = "grasplab") -> list[Any]:
    """Every run of the MLflow experiment (parents and children)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], max_results=10000)
