"""Local services on one machine: Ray's own multi-node simulation, with and without autoscaling.

``grasplab bench platform`` measures scaling over simulated nodes with them (and the tests use
them). Every service binds 127.0.0.1 on a free port, runs in its own process session and is
stopped by the helper that started it, by process id (never ``ray stop``, which would stop
every Ray on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``command`` in its own process session, stdout and stderr to ``log_path``."""
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_tcp(port: int, timeout: float, proc: subprocess.Popen) -> None:
    """Poll 127.0.0.1:``port`` until it accepts a TCP connection.

    Raises:
        TimeoutError: Nothing accepted within ``timeout`` seconds.
        RuntimeError: ``proc`` exited first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before :{port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"127.0.0.1:{port} did not accept within {timeout:.0f} s")


@contextmanager
def local_cluster(head_cpus: int, worker_cpus: Sequence[int]) -> Iterator[Any]:
    """Ray's own multi-node simulation (``ray.cluster_utils.Cluster``) on 127.0.0.1.

    Every node is a separate raylet, child of this process, removed by ``shutdown()`` (never
    ``ray stop``). Yields the cluster; ``cluster.address`` is its GCS address.
    """
    from ray.cluster_utils import Cluster

    from grasplab.platform.runtime import loopback_only

    loopback_only()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus})
    try:
        for cpus in worker_cpus:
            cluster.add_node(num_cpus=cpus)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def fake_autoscaler_config(port: int, gpu_nodes: int, head_cpus: int = 2) -> dict[str, Any]:
    """Autoscaling config of Ray's ``fake_multinode`` provider: a CPU head and GPU nodes at 0."""
    empty: list[str] = []
    return {
        "cluster_name": "grasplab-fake",
        "max_workers": gpu_nodes,
        "upscaling_speed": 10.0,
        "idle_timeout_minutes": 60,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": f"127.0.0.1:{port}",
        },
        "available_node_types": {
            "ray.head.default": {
                "resources": {"CPU": head_cpus},
                "node_config": {},
                "max_workers": 0,
            },
            "gpu_node": {
                "resources": {"CPU": 1, "GPU": 1},
                "node_config": {},
                "min_workers": 0,
                "max_workers": gpu_nodes,
            },
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": empty,
        "file_mounts_sync_continuously": False,
        "rsync_exclude": empty,
        "rsync_filter": empty,
        "initialization_commands": empty,
        "setup_commands": empty,
        "head_setup_commands": empty,
        "worker_setup_commands": empty,
        "head_start_ray_commands": empty,
        "worker_start_ray_commands": empty,
    }


@contextmanager
def fake_autoscaling_cluster(gpu_nodes: int = 2, head_cpus: int = 2) -> Iterator[dict[str, Any]]:
    """A Ray head with the ``fake_multinode`` autoscaler; GPU nodes ({CPU 1, GPU 1}) start at 0.

    Started as ``ray start --head --block`` in its own process session on 127.0.0.1 and
    stopped by its process group; fake nodes it launched (raylets under the same temp dir)
    are killed too. Yields ``address`` (GCS) and ``temp``.
    """
    import json

    port = free_port()
    temp = tempfile.mkdtemp(prefix="rayf", dir="/tmp")
    config = Path(temp) / "autoscaler.json"
    config.write_text(json.dumps(fake_autoscaler_config(port, gpu_nodes, head_cpus)))
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # the in-process test driver connects without a token (the cluster is loopback-only)
        "RAY_AUTH_MODE": "disabled",
    }
    env.pop("RAY_ADDRESS", None)
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={head_cpus}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        f"--autoscaling-config={config}",
    ]
    proc = spawn(command, env, Path(temp) / "ray_start.log")
    try:
        wait_tcp(port, 90, proc)
        yield {"address": f"127.0.0.1:{port}", "temp": temp, "proc": proc}
    finally:
        stop(proc, grace=5.0)
        kill_matching(temp)


def kill_matching(needle: str) -> int:
    """SIGKILL every process whose command line mentions ``needle`` (a private temp dir)."""
    import psutil

    killed = 0
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(needle in a for a in proc.info["cmdline"] or []):
                proc.kill()
                killed += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return killed
