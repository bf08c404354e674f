"""A sweep read back from MLflow: its parent run's results, trial runs and images.

Serves ``grasplab report`` (:mod:`grasplab.platform.reporting`) and the ablation study's report
(:mod:`grasplab.platform.study`), which reads each cell's sweep back the same way.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from grasplab.platform.report.rows import ResultRow, StageOutcome
from grasplab.platform.tracking import PARENT, ROLE, SWEEP_ID, search_all

IMAGES = (".png", ".gif")


class ReportError(ValueError):
    """Bad input: unknown sweep, missing store, incompatible sweeps (one line, exit 2)."""


@dataclass
class Sweep:
    """One sweep's parent run and what hangs off it."""

    run: Any
    protocol: dict[str, str]
    entries: list[ResultRow]
    floors: dict[int, dict[str, float]]
    trials: list[Any]
    images: dict[str, bytes]

    @property
    def sweep_id(self) -> str:
        """The sweep's id (its parent run's name)."""
        return sweep_id_of(self.run)


def param_value(text: str) -> Any:
    """An MLflow param or tag as the JSON value it was logged from (else the text itself)."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def read_table(client: MlflowClient, run_id: str, path: str) -> list[dict[str, Any]]:
    """A ``log_table`` artifact as records (NaN where the JSON holds null)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except (MlflowException, OSError) as error:
            first = (str(error).strip().splitlines() or [""])[0]
            raise ReportError(f"run {run_id} has no readable artifact {path}: {first}") from error
        data = json.loads(Path(local).read_text())
    columns = data["columns"]
    return [
        {c: (math.nan if v is None else v) for c, v in zip(columns, row, strict=True)}
        for row in data["data"]
    ]


def load_sweep(client: MlflowClient, run: Any) -> Sweep:
    """Read a sweep back from its parent run: entries, floors, trials, images."""
    metrics = run.data.metrics
    protocol = protocol_of(run)
    trials = search_all(
        client,
        [run.info.experiment_id],
        f"tags.`{PARENT}` = '{run.info.run_id}' and tags.`{ROLE}` = 'trial'",
    )
    keys = [k.removesuffix("/test_n") for k in metrics if k.endswith("/test_n")]
    if not keys:
        raise ReportError(f"parent run {run.info.run_id} holds no test results (unfinished sweep?)")
    entries = sorted(
        (entry(client, run, key, trials) for key in keys),
        key=lambda e: (e.horizon, _order(run, e.label), e.key),
    )
    floors: dict[int, dict[str, float]] = {}
    for name, value in metrics.items():
        found = re.fullmatch(r"random_floor/H(\d+)/(\w+)", name)
        if found:
            floors.setdefault(int(found[1]), {})[found[2]] = value
    return Sweep(run, protocol, entries, floors, trials, images(client, run.info.run_id))


def _order(run: Any, label: str) -> int:
    """Position of a variant in the sweep's ``planners`` param (unknown ones last)."""
    planners = param_value(run.data.params.get("planners", "[]"))
    return planners.index(label) if isinstance(planners, list) and label in planners else 1000


def outcome_artifact(key: str) -> str:
    """Artifact path of a stage outcome's JSON on the parent run (exact floats, full config)."""
    return f"test/{key}.outcome.json"


def read_outcome(client: MlflowClient, run_id: str, key: str) -> dict[str, Any] | None:
    """The stage outcome a sweep logged for ``key`` (None: a sweep older than that artifact)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, outcome_artifact(key), tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(local).read_text())


def entry(client: MlflowClient, run: Any, key: str, trials: Sequence[Any]) -> ResultRow:
    """The result row ``key`` of a parent run: the outcome the sweep logged, as it printed it.

    A sweep older than the outcome artifact is rebuilt from the parent's metrics, its
    ``test/<key>.json`` table and its best trial's params (no paired default test then).
    """
    sweep_id = run.data.tags.get(SWEEP_ID, "")
    logged = read_outcome(client, run.info.run_id, key)
    if logged is not None:
        return StageOutcome.from_dict(logged).row(sweep_id)
    metrics = run.data.metrics
    test = {
        name.removeprefix(f"{key}/test_"): value
        for name, value in metrics.items()
        if name.startswith(f"{key}/test_")
    }
    best = [t for t in trials if t.data.tags.get("best") == "true" and outcome_key(t) == key]
    horizon = int(run.data.params.get("protocol.horizon", 0))
    tuned: dict[str, Any] = {}
    label = key
    if best:
        params = best[0].data.params
        horizon = int(params.get("protocol.horizon", horizon))
        label = best[0].data.tags.get("variant", key)
        tuned = {
            f: param_value(params[f]) for f in param_value(best[0].data.tags.get("tuned", "[]"))
        }
    elif (found := re.fullmatch(r"(.+)-H(\d+)", key)) is not None:
        label, horizon = found[1], int(found[2])
    records = read_table(client, run.info.run_id, f"test/{key}.json")
    return ResultRow(key, label, horizon, test, records, tuned, sweep=sweep_id)


def outcome_key(trial: Any) -> str:
    """The outcome key of a trial's variant: its run name without the trailing trial id."""
    return trial.info.run_name.rsplit("-", 1)[0]


def images(client: MlflowClient, run_id: str, folder: str | None = None) -> dict[str, bytes]:
    """Every png/gif artifact of the run (``report/`` excluded), by artifact path."""
    found: dict[str, bytes] = {}
    for item in client.list_artifacts(run_id, folder):
        if item.is_dir and item.path not in ("report", "test"):
            found.update(images(client, run_id, item.path))
        elif item.path.lower().endswith(IMAGES):
            with tempfile.TemporaryDirectory() as tmp:
                found[item.path] = Path(
                    client.download_artifacts(run_id, item.path, tmp)
                ).read_bytes()
    return found


def protocol_of(run: Any) -> dict[str, str]:
    """The ``protocol.*`` params of a parent run, without the prefix."""
    params = run.data.params
    return {k.removeprefix("protocol."): v for k, v in params.items() if k.startswith("protocol.")}


def sweep_id_of(run: Any) -> str:
    """A parent run's sweep id (its name when untagged)."""
    return run.data.tags.get(SWEEP_ID, run.info.run_name)
