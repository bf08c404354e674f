"""Where a sweep runs and what it remembers: Ray connection, sweep folder and resumable state."""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import ray

T = TypeVar("T")

STATE_FILE = "sweep.json"


def quiet_environment() -> None:
    """Tune settings for a driver that logs to MLflow itself (set before Tune runs).

    No Tune loggers (CSV/JSON/TensorBoard files per trial): MLflow and Tune's experiment state
    are the record. Tune's JSON logger wrote three files per trial (``params.json``,
    ``params.pkl``, ``result.json``), each twice (its staging folder, then the storage folder),
    and after the loop Tune read every ``result.json`` back into a DataFrame nothing here uses;
    Tune's one warning that lists the trials without those files is dropped
    (:class:`NoResultFiles`). The experiment-state period is set by the sweep around each
    ``Tuner.fit`` (:func:`grasplab.platform.sweep.state_period`): the 2 s it was made a
    3,000-trial sweep rewrite a state file that grows with every trial thousands of times (GBs
    written).
    """
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    analysis = logging.getLogger(TUNE_ANALYSIS_LOGGER)
    if not any(isinstance(f, NoResultFiles) for f in analysis.filters):
        analysis.addFilter(NoResultFiles())
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A trial checkpoints after every report, and Tune keeps a full copy of that report with
    # each of its checkpoints (in memory and in every state snapshot). With this switch it keeps
    # only the checkpoint score (none is set: an empty dict); the latest checkpoint keeps its
    # report, and the trial its last result.
    os.environ.setdefault(CHECKPOINT_SCORE_ONLY, "1")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


CHECKPOINT_SCORE_ONLY = "TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE"
"""Tune's switch to keep only the checkpoint score with each kept checkpoint's report."""
TUNE_ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"
"""The logger of Tune's result analysis (``Tuner.fit``'s ``ResultGrid``)."""


class NoResultFiles(logging.Filter):
    """Drops Tune's warning about trials without result files, when that is all it reports.

    After ``Tuner.fit`` Tune reads each trial's ``result.json`` (or ``progress.csv``) into a
    DataFrame and warns once, listing every trial, about those it could not read. The sweep
    writes neither file (:func:`quiet_environment`), so the warning would list every trial of
    the stage. It still passes when any trial failed for another reason.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a warning whose every failure is a trial's missing result files."""
        message = record.getMessage()
        if not message.startswith("Failed to fetch metrics for"):
            return True
        failures = [line for line in message.splitlines()[1:] if line.strip()]
        return not failures or not all(
            "FileNotFoundError" in line and "were not found at" in line for line in failures
        )


LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ConnectError(RuntimeError):
    """``cluster.address`` could not be reached (the CLI prints it and exits with code 2)."""


def off_driver(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` run in a Ray worker process; its value.

    For the driver's rare computations that need a heavy library (the significance tests'
    scipy.stats and statsmodels, matplotlib's plots): imported in the driver, such a library
    stays in its memory for the rest of the sweep (glibc seldom returns the heap), here it
    lives in a worker that Ray reuses. ``function`` must be importable by the workers (a
    module-level function of grasplab or of the user's package); its arguments and value
    travel as Ray objects. A zero-CPU task: it never waits behind the pool's reserved CPUs.
    """
    return ray.get(_remote(function).remote(*args, **kwargs))


@functools.cache
def _remote(function: Callable[..., Any]) -> Any:
    return ray.remote(num_cpus=0)(function)


def loopback_only() -> None:
    """Make Ray in this process treat the machine as a one-node, loopback-only cluster.

    Ray's own switch for a local-only Ray (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read once at
    import into ``ray_constants.ENABLE_RAY_CLUSTER``): the node IP becomes 127.0.0.1, so the GCS,
    raylet, object manager, workers and agents bind 127.0.0.1 only, and an address on 127.0.0.1 is
    not rewritten to the host's IP. Set in the environment too, for the processes Ray starts.
    """
    import ray._private.ray_constants as ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (a ``ray://`` or ``http://`` prefix removed).

    Raises:
        ConnectError: No port in the address.
    """
    bare = address.split("://", 1)[-1].rstrip("/")
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise ConnectError(f"cluster.address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def probe(host: str, port: int, timeout: float) -> None:
    """Fail fast when nothing accepts TCP connections at ``host:port``.

    Raises:
        ConnectError: Naming the address and the socket error.
    """
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 10.0)):
            pass
    except OSError as error:
        raise ConnectError(
            f"cluster.address {host}:{port}: nothing answers ({error}); is the Ray head up "
            "(`ray start --head`), and is this its GCS port (6379 by default)?"
        ) from None


def init_with_timeout(timeout: float, **kwargs: Any) -> None:
    """``ray.init(**kwargs)`` that gives up after ``timeout`` seconds with a clear error.

    Raises:
        ConnectError: ``ray.init`` failed or did not return in time (a hung attempt is left in
            a daemon thread; the process is expected to exit).
    """
    outcome: dict[str, BaseException | None] = {}

    def attempt() -> None:
        try:
            ray.init(**kwargs)
            outcome["error"] = None
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error

    thread = threading.Thread(target=attempt, name="grasplab-ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" not in outcome:
        raise ConnectError(
            f"could not connect to the Ray cluster at {kwargs.get('address')!r} within "
            f"{timeout:.0f} s (cluster.connect_timeout_s); check the address and that this "
            "machine can reach the head's private IP"
        )
    if outcome["error"] is not None:
        raise ConnectError(
            f"could not connect to the Ray cluster at {kwargs.get('address')!r}: "
            f"{str(outcome['error']).strip().splitlines()[0] if str(outcome['error']) else ''}"
            " (a head started by `ray start` checks a token: export RAY_AUTH_MODE=token with the "
            "head's token in ~/.ray/auth_token or RAY_AUTH_TOKEN)"
        ) from outcome["error"]


def connect(cluster: Mapping[str, Any]) -> bool:
    """Connect to (or start) Ray; returns True when this process started it (and owns it).

    ``cluster.address`` set: connect to that cluster, within ``cluster.connect_timeout_s``.
    Unset but ``RAY_ADDRESS`` in the environment (a ``ray job submit`` driver): connect to the
    job's cluster. Otherwise start an embedded Ray with ``cluster.num_cpus`` CPUs (all cores when
    null), listening on 127.0.0.1 only: ``address="local"`` always starts a new Ray, where
    ``ray.init()`` with no address would join whatever Ray's ``ray_current_cluster`` file names
    (a cluster the user started for something else, or a dead one it then retries for minutes).

    Raises:
        ConnectError: The address is unreachable, or Ray did not connect in time.
    """
    if ray.is_initialized():
        return False
    namespace = cluster.get("namespace") or "grasplab"
    address = cluster.get("address") or ("auto" if os.environ.get("RAY_ADDRESS") else None)
    timeout = float(cluster.get("connect_timeout_s") or 60)
    if address:
        if address != "auto":
            host, port = split_address(address)
            if host in LOOPBACK:
                loopback_only()  # else Ray rewrites 127.0.0.1 to the host IP and retries
            probe(host, port, timeout)
        init_with_timeout(timeout, address=address, namespace=namespace, log_to_driver=False)
        return False
    loopback_only()
    ray.init(
        address="local",
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
        parent_tags: Extra tags of the parent run (a study's cell: ``mlflow.parentRunId`` of the
            study's run, the study id, the cell and seed).
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
    parent_tags: dict[str, str] = field(default_factory=dict)

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
