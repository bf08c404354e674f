"""Where a sweep runs and what it remembers: Ray connection, sweep folder and resumable state."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray

STATE_FILE = "sweep.json"


def quiet_environment() -> None:
    """Tune settings for a driver that logs to MLflow itself (set before Tune runs).

    No Tune auto-loggers (CSV/TensorBoard per trial: MLflow is the record; the sweep adds
    Tune's JSON logger back, which its result analysis reads), and the
    experiment state saved every 2 s (not 10 s) so that a killed driver resumes close to where
    it died.
    """
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def connect(cluster: Mapping[str, Any]) -> bool:
    """Connect to (or start) Ray; returns True when this process started it (and owns it).

    ``cluster.address`` set: connect to that cluster. Unset but ``RAY_ADDRESS`` in the
    environment (a ``ray job submit`` driver): connect to the job's cluster. Otherwise start an
    embedded Ray with ``cluster.num_cpus`` CPUs (all cores when null).
    """
    if ray.is_initialized():
        return False
    namespace = cluster.get("namespace") or "grasplab"
    address = cluster.get("address") or ("auto" if os.environ.get("RAY_ADDRESS") else None)
    if address:
        ray.init(address=address, namespace=namespace, log_to_driver=False)
        return False
    ray.init(
        num_cpus=cluster.get("num_cpus"),
        namespace=namespace,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=True,
        logging_level="WARNING",
    )
    return True


def storage_root(cluster: Mapping[str, Any], cwd: Path) -> Path:
    """Tune's storage folder: ``cluster.storage_path`` or ``<cwd>/ray_results`` (absolute)."""
    path = cluster.get("storage_path")
    return Path(path).expanduser().resolve() if path else (cwd / "ray_results").resolve()


def new_sweep_id(name: str) -> str:
    """``<name>-<date>-<time>-<4 hex>``: unique per sweep, readable, sortable."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


@dataclass
class SweepState:
    """A sweep's durable state (``<storage>/<sweep_id>/sweep.json``), rewritten at each step.

    Attributes:
        sweep_id: Unique id (also the sweep folder's name).
        name: Sweep name (``--resume`` looks it up).
        config: The composed plain config (authoritative on resume).
        folder: The sweep folder (Tune experiments of the stages live under it).
        tracking_uri: MLflow store.
        artifact_root: Artifact root of the embedded store (None for a server).
        parent_run_id: The MLflow parent run.
        status: ``running``, ``finished``, ``failed`` or ``interrupted``.
        stages: Finished stages' outcomes (:class:`StageOutcome` dicts) by stage key.
    """

    sweep_id: str
    name: str
    config: dict[str, Any]
    folder: str
    tracking_uri: str
    artifact_root: str | None = None
    parent_run_id: str | None = None
    status: str = "running"
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The state file."""
        return Path(self.folder) / STATE_FILE

    def save(self) -> None:
        """Write atomically (a crash never leaves half a file)."""
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=str))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: Path) -> SweepState:
        """Read a state file."""
        return cls(**json.loads(Path(path).read_text()))


def find_resumable(root: Path, name: str) -> SweepState | None:
    """The most recent unfinished sweep called ``name`` under ``root``, if any."""
    candidates = []
    for path in root.glob(f"*/{STATE_FILE}"):
        try:
            state = SweepState.load(path)
        except (OSError, ValueError, TypeError):
            continue
        if state.name == name and state.status != "finished":
            candidates.append((path.stat().st_mtime, state))
    return max(candidates, key=lambda c: c[0])[1] if candidates else None
