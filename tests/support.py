"""Test helpers: a private Ray head, an MLflow server, listening sockets, MLflow run queries.

Every service binds 127.0.0.1 on a free port, runs in its own process session and is stopped
by the helper that started it, by process id (never ``ray stop``). The local clusters the
product itself uses (``grasplab bench platform``) live in :mod:`grasplab.platform.simcluster`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from grasplab.platform.simcluster import (  # noqa: F401 - the tests' helpers, from one place
    BIN,
    fake_autoscaling_cluster,
    free_port,
    local_cluster,
    spawn,
    stop,
)


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


RECIPE_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
"""The one-machine recipe's environment: Ray's local-only switch (without it ``ray start``
registers the head at the host's IP and listens on every interface) and Ray 2.60's token auth
for the ``ray job`` CLI."""
RECIPE_HEAD = ("start", "--head", "--node-ip-address=127.0.0.1")
"""The one-machine recipe's ``ray start`` (the cluster guide gives it as written)."""


@contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[dict[str, Any]]:
    """The one-machine recipe's Ray head (:data:`RECIPE_HEAD`), on free ports; yields addresses.

    The recipe's ``ray start --head --node-ip-address=127.0.0.1`` with Ray's local-only switch
    in the environment (:data:`RECIPE_ENV`), plus what a shared machine needs: free ports in place
    of the defaults, a private temp dir and ``--block`` (stopped by process group, never
    ``ray stop``).

    Yields:
        ``address`` (GCS, for ``ray.init``), ``dashboard`` (``http://...``, for ``ray job``),
        ``env`` (environment for the ``ray`` CLI), ``temp``, ``pid`` (of ``ray start``).
    """
    port, dashboard = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="rayt", dir="/tmp")
    env = {**os.environ, **RECIPE_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)  # the venv's `python` first, as when it is activated
    command = [
        str(BIN / "ray"),
        *RECIPE_HEAD,
        "--block",
        f"--port={port}",
        f"--dashboard-port={dashboard}",
        f"--num-cpus={num_cpus}",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
    ]
    proc = spawn(command, env, Path(temp) / "ray_start.log")
    try:
        wait_http(f"http://127.0.0.1:{dashboard}/api/version", 90, proc)
        yield {
            "address": f"127.0.0.1:{port}",
            "dashboard": f"http://127.0.0.1:{dashboard}",
            "env": env,
            "temp": temp,
            "pid": proc.pid,
        }
    finally:
        stop(proc, grace=5.0)  # `ray start --block` drains for 30 s on SIGTERM otherwise


class MlflowServer:
    """An ``mlflow server`` on 127.0.0.1 that can be stopped and started again on the same port.

    Args:
        folder: Holds the SQLite store, the artifacts and the server log.
        port: Fixed port (default: a free one).
        proxied: Serve artifacts through the server (``--artifacts-destination``: clients see
            ``mlflow-artifacts:/`` URIs and download over HTTP, as workers on other nodes must)
            instead of handing out the local artifact path.
    """

    def __init__(self, folder: Path, port: int | None = None, proxied: bool = False) -> None:
        self.folder = Path(folder).resolve()
        self.port = port or free_port()
        self.proxied = proxied
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def command(self) -> list[str]:
        """The ``mlflow server`` command line."""
        artifacts = str(self.folder / "artifacts")
        store = "--artifacts-destination" if self.proxied else "--default-artifact-root"
        return [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'mlflow.db'}",
            store,
            artifacts,
            "--workers",
            "1",
        ]

    def start(self, timeout: float = 90.0) -> str:
        """Start (or restart) the server and wait for ``/health``; returns its URI."""
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.starts += 1
        self.proc = spawn(self.command(), env, self.folder / f"server-{self.starts}.log")
        wait_http(f"{self.uri}/health", timeout, self.proc)
        return self.uri

    def stop(self) -> None:
        """Stop the server (its whole process group)."""
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@contextmanager
def mlflow_server(folder: Path, proxied: bool = False) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (SQLite store and artifacts in ``folder``); yields its URI."""
    server = MlflowServer(folder, proxied=proxied)
    try:
        yield server.start()
    finally:
        server.stop()


def listening_sockets(root_pid: int) -> list[tuple[str, str, int]]:
    """``(process name, ip, port)`` of every TCP socket listening in ``root_pid``'s tree."""
    import psutil

    root = psutil.Process(root_pid)
    pids = {root_pid} | {p.pid for p in root.children(recursive=True)}
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            try:
                name = psutil.Process(conn.pid).name()
            except psutil.NoSuchProcess:
                continue
            found.append((name, conn.laddr.ip, conn.laddr.port))
    return found


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or the IPv4-mapped form of a 127.x address."""
    import ipaddress

    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def sweep_runs(tracking_uri: str, experiment: str = "grasplab") -> list[Any]:
    """Every run of the MLflow experiment (parents and children)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], max_results=10000)


def trials_and_parents(tracking_uri: str, experiment: str = "grasplab") -> tuple[list, list]:
    """The sweep's MLflow runs by role: ``(trial runs, sweep parent runs)``."""
    runs = sweep_runs(tracking_uri, experiment)
    role = [r.data.tags.get("grasplab.role") for r in runs]
    trials = [r for r, k in zip(runs, role, strict=True) if k == "trial"]
    return trials, [r for r, k in zip(runs, role, strict=True) if k == "sweep"]
