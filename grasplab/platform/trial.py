"""The Tune trial: a light CPU task that sends episode chunks to the worker pool and aggregates.

A trial evaluates one planner config on the protocol's TUNING goals, one chunk of episodes per
worker call, and reports the cumulative metrics after every chunk (the unit ASHA's rungs count
in). Its progress is checkpointed after every report, so a trial that Tune retries (or resumes
after a driver crash) continues from its last finished chunk instead of starting over.

The trial's checkpoint is also its result store: the per-episode records live there only
(:func:`checkpoint_records` reads them back on the driver). What goes through ``tune.report``
is the aggregates, a few hundred bytes whatever the number of episodes, because Tune keeps
every result in its experiment state and rewrites that file throughout the sweep.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune

from grasplab.eval.results import EpisodeResults
from grasplab.platform.search import LABEL

STATE_FILE = "trial_state.json"
DRIVING = ("n", "success_rate", "median_time_to_success")
"""Summary metrics a trial reports as numbers: what ASHA, TPE and the ranking read."""
PACKED = ("ci_low", "ci_high", "final_distance", "model_steps", "wall_time")
"""Summary metrics a trial reports packed in one string, :data:`FIGURES`."""
REPORTED = DRIVING + PACKED
"""Summary metrics a trial reports (names of :func:`grasplab.eval.summarize`)."""
FIGURES = "figures"
"""The result key of the packed figures (JSON): :data:`PACKED`, ``compute_time``, ``trial_time``.

Tune keeps, for every numeric key of a result, its min, max, mean and two running windows
(pickled deques) in the trial's state, and rewrites that state throughout the sweep: each
numeric key costs about 0.6 KB per trial there. The figures only the MLflow logger and the
report read travel as one string, so a trial's state holds 4 numbers of ours, not 11.
"""


def figures(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """A trial result's metrics with its packed :data:`FIGURES` unpacked ({} for None)."""
    if not result:
        return {}
    out = {k: v for k, v in result.items() if k != FIGURES}
    packed = result.get(FIGURES)
    if isinstance(packed, str):
        out.update(json.loads(packed))
    return out


def chunk_indices(n: int, size: int) -> list[list[int]]:
    """Episode indices ``0..n-1`` in consecutive chunks of at most ``size``."""
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def summarize_records(records: Sequence[dict[str, Any]], plan_time: float) -> dict[str, float]:
    """Reported metrics of per-episode records; ``wall_time`` is the summed planning time."""
    return EpisodeResults.from_records(records).summary(wall_time=plan_time)


def evaluate_chunks(
    pool: Any,
    context: dict[str, Any],
    config: dict[str, Any],
    split: str,
    chunks: Sequence[Sequence[int]],
) -> list[Any]:
    """Object refs of every chunk, dispatched at once (they spread over idle workers)."""
    return [
        pool.call.remote("evaluate", _call_args(context, config, split, chunk)) for chunk in chunks
    ]


def _call_args(
    context: dict[str, Any], config: dict[str, Any], split: str, indices: Sequence[int]
) -> dict[str, Any]:
    return {
        "spec": context["world_model"],
        "protocol": context["protocol"],
        "planner": context["planner"],
        "config": config,
        "split": split,
        "indices": list(indices),
    }


class TrialState:
    """What a trial has done so far: per-episode records and timings (JSON-checkpointed)."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self.records: list[dict[str, Any]] = list(data.get("records", []))
        self.chunks_done: int = int(data.get("chunks_done", 0))
        self.plan_time: float = float(data.get("plan_time", 0.0))
        self.compute_time: float = float(data.get("compute_time", 0.0))
        self.trial_time: float = float(data.get("trial_time", 0.0))

    @classmethod
    def restore(cls) -> TrialState:
        """The state of the trial's latest checkpoint (empty when it has none)."""
        return cls.of_checkpoint(tune.get_checkpoint())

    @classmethod
    def of_checkpoint(cls, checkpoint: tune.Checkpoint | None) -> TrialState:
        """The state saved in ``checkpoint`` (empty for None)."""
        if checkpoint is None:
            return cls()
        with checkpoint.as_directory() as folder:
            return cls(json.loads((Path(folder) / STATE_FILE).read_text()))

    def save(self, folder: str | Path) -> None:
        """Write this state into ``folder`` (a checkpoint's directory)."""
        data = {
            "records": self.records,
            "chunks_done": self.chunks_done,
            "plan_time": self.plan_time,
            "compute_time": self.compute_time,
            "trial_time": self.trial_time,
        }
        (Path(folder) / STATE_FILE).write_text(json.dumps(data))

    def add(self, output: dict[str, Any], elapsed: float) -> None:
        """Fold in one chunk's worker output."""
        records = output["records"]
        self.records.extend(records)
        self.chunks_done += 1
        self.plan_time += float(records[0]["plan_time"]) if records else 0.0
        self.compute_time += float(output["compute_s"])
        self.trial_time += elapsed

    def metrics(self) -> dict[str, Any]:
        """What the trial reports: the driving metrics as numbers, the rest packed in a string.

        Never the records. See :data:`FIGURES`; :func:`figures` unpacks a result.
        """
        summary = summarize_records(self.records, self.plan_time)
        packed = {
            **{k: summary[k] for k in PACKED},
            "compute_time": self.compute_time,
            "trial_time": self.trial_time,
        }
        return {
            **{k: summary[k] for k in DRIVING},
            "chunks": self.chunks_done,
            FIGURES: json.dumps(packed),
        }

    def report(self) -> None:
        """``tune.report`` the metrics with a checkpoint of this state (records included)."""
        with tempfile.TemporaryDirectory() as folder:
            self.save(folder)
            tune.report(self.metrics(), checkpoint=tune.Checkpoint.from_directory(folder))


def checkpoint_records(checkpoint: tune.Checkpoint | None) -> list[dict[str, Any]]:
    """The per-episode records a trial saved in ``checkpoint`` (``[]`` for None)."""
    return TrialState.of_checkpoint(checkpoint).records


def trial_records(trial: Any) -> list[dict[str, Any]]:
    """The per-episode records of a Tune trial that has ended, read from its stored checkpoints.

    The checkpoint of the trial's last report, found in the trial's folder on Tune's storage
    (``trial.checkpoint`` can still name an older one when ``on_trial_complete`` runs): the
    newest ``checkpoint_*`` whose state has as many chunks as the last result (a resumed trial
    may have left newer ones from before the crash), else the newest. ``[]`` when it has none.
    """
    import pyarrow.fs

    storage = trial.storage
    fs, folder = storage.storage_filesystem, storage.trial_fs_path
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(folder))
    except (FileNotFoundError, OSError):
        return []
    names = sorted(
        (i.base_name for i in infos if i.base_name.startswith("checkpoint_")), reverse=True
    )
    chunks = int((trial.last_result or {}).get("chunks", 0) or 0)
    states = (
        TrialState.of_checkpoint(tune.Checkpoint(f"{folder}/{name}", filesystem=fs))
        for name in names
    )
    newest = None
    for state in states:
        newest = newest or state
        if state.chunks_done == chunks:
            return state.records
    return newest.records if newest else []


GATE_TIMEOUT_S = 10.0
"""The longest the first trials of a Tune experiment wait for each other (see
:meth:`grasplab.platform.workers.WorkerPool.gate`)."""
_PASSED: set[str] = set()
"""The experiments whose gate this trial process has passed (Tune reuses the process for the
experiment's later trials, which then do not call it)."""


def start_together(pool: Any, gates: Mapping[str, int]) -> str | None:
    """Before a trial process's first chunk of an experiment: wait at the pool's gate.

    ``gates``: experiment name -> its first trials (``sweep.trials_per_worker`` x workers, or
    fewer in a small experiment). Returns how the gate opened (None: no gate, or passed before).
    """
    experiment = tune.get_context().get_experiment_name()
    expected = gates.get(experiment)
    if not expected or experiment in _PASSED:
        return None
    opened = ray.get(pool.gate.remote(experiment, int(expected), GATE_TIMEOUT_S))
    _PASSED.add(experiment)
    return opened


def run_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Tune function trainable: evaluate one planner config on the tuning goals, chunk by chunk.

    Args:
        config: ``label`` (the planner variant) and the sampled hyperparameters (planner config
            field names).
        context: Plain dict from the driver: ``planners`` (label -> ``planner`` name and ``base``
            fixed fields), ``protocol`` (dict), ``world_model``, ``chunk_size``, ``pool`` and
            ``namespace`` (the dispatcher actor), ``gates`` (:func:`start_together`).
    """
    pool = ray.get_actor(context["pool"], namespace=context["namespace"])
    start_together(pool, context.get("gates") or {})
    sampled = {k: v for k, v in config.items() if k != LABEL}
    variant = context["planners"][config[LABEL]]
    call = {**context, "planner": variant["planner"]}
    planner_config = {**variant["base"], **sampled}
    chunks = chunk_indices(context["protocol"]["tune_episodes"], context["chunk_size"])
    state = TrialState.restore()
    for chunk in chunks[state.chunks_done :]:
        start = time.perf_counter()
        (ref,) = evaluate_chunks(pool, call, planner_config, "tune", [chunk])
        output = ray.get(ref)
        state.add(output, time.perf_counter() - start)
        state.report()
