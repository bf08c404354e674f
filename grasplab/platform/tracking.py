"""MLflow tracking, all of it done by the driver.

One parent run per sweep; one nested child run per Tune trial, created and closed by a Tune
:class:`TrialLogger` callback that runs in the driver (workers and trials never talk to MLflow).
Child runs are keyed by a ``grasplab.trial_key`` tag (sweep id / stage / Tune trial id), so a
resumed sweep, whose restored trials keep their ids, reuses their runs instead of duplicating
them. Every run the tracker opened is ended FINISHED, FAILED or KILLED, also on an exception or
Ctrl-C (:meth:`Tracker.close_all`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import posixpath
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from ray import tune

from grasplab.eval import EvalProtocol
from grasplab.platform import progress as live
from grasplab.platform.fingerprint import git_state
from grasplab.platform.search import LABEL
from grasplab.platform.trial import figures, trial_records

TRIAL_KEY = "grasplab.trial_key"
STUDY_ID = "grasplab.study_id"
CELL = "grasplab.cell"
SEED = "grasplab.seed"
"""Tags of an ablation study's run (its id) and of its cells' sweep runs (cell, seed)."""
SWEEP_ID = "grasplab.sweep_id"
ROLE = "grasplab.role"
PARENT = "mlflow.parentRunId"
SUPERSEDED = "grasplab.superseded"
SUPERSEDED_WHY = (
    "the driver was killed before Tune saved this trial in its state; the resumed sweep ran "
    "another trial in its place, so this run is not part of the sweep's result"
)
LOGGED_TABLES = "mlflow.loggedArtifacts"
"""The tag MLflow's UI reads to list a run's tables."""
MAX_PARAM = 6000
RUNNING = f"attributes.status = '{RunStatus.to_string(RunStatus.RUNNING)}'"
"""Search condition of the runs still RUNNING."""
QUIET_LINKS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
"""MLflow's switch for the links its client prints when it ends a run on a tracking server."""
TRIAL_METRICS = (
    "success_rate",
    "ci_low",
    "ci_high",
    "median_time_to_success",
    "final_distance",
    "model_steps",
    "wall_time",
    "compute_time",
    "trial_time",
    "n",
)
"""Result keys logged as metrics of a child run (history: one point per report)."""
PARTIAL = {
    "success_rate": "partial_success_rate",
    "ci_low": "partial_ci_low",
    "ci_high": "partial_ci_high",
}
"""While a trial runs, its success figures are on the chunks scored so far: they are logged
under these names. Only a trial that scored every tuning episode logs ``success_rate`` (and its
CI) when it ends, so the MLflow UI's ``success_rate`` column compares complete trials only; a
trial ASHA stopped early keeps its ``partial_*`` figures, ``episodes_scored`` and the tag
``early_stopped=true``."""


def default_tracking(cwd: Path) -> tuple[str, str]:
    """The embedded default: ``sqlite:///<cwd>/mlflow.db`` and ``<cwd>/mlartifacts``."""
    cwd = cwd.resolve()
    return f"sqlite:///{cwd / 'mlflow.db'}", (cwd / "mlartifacts").as_uri()


UI_BASE = "http://127.0.0.1:5000"
"""Where ``mlflow ui`` serves by default (and :func:`ui_command` says so explicitly)."""


def ui_command(tracking_uri: str, artifact_root: str | None) -> str:
    """How to open the MLflow UI on this sweep's store."""
    if tracking_uri.startswith("http"):
        return f"open {tracking_uri} (MLflow server)"
    command = f"mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri {tracking_uri}"
    if artifact_root:
        command += f" --default-artifact-root {artifact_root}"
    return command


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the UI's model-training view (not the GenAI landing page).

    ``<ui>/#/experiments/<experiment id>/runs/<run id>?workflowType=machine_learning``: the UI of
    MLflow 3.17 routes runs at ``/experiments/:experimentId/runs/:runUuid`` and takes the
    workflow type (``genai`` by default, or ``machine_learning``) from that query parameter. The
    UI is the server itself for an ``http`` store, else ``mlflow ui``'s default address.
    """
    base = tracking_uri.rstrip("/") if tracking_uri.startswith("http") else UI_BASE
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def git_sha(cwd: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the code's repository (``-dirty`` when tracked files changed).

    Falls back to ``$GRASPLAB_GIT_SHA`` (a Ray job's working dir has no ``.git``), else
    ``unknown`` (:func:`grasplab.platform.fingerprint.git_state`).
    """
    sha, dirty = git_state(cwd)
    return sha + ("-dirty" if dirty == "true" else "")


def protocol_params(protocol: EvalProtocol) -> dict[str, Any]:
    """Protocol fields as ``protocol.<field>`` params, plus version and fingerprint."""
    params = {f"protocol.{k}": v for k, v in protocol.to_dict().items()}
    params["protocol.fingerprint"] = protocol.fingerprint()
    return params


def _text(value: Any) -> str:
    if isinstance(value, Mapping | list | tuple):
        value = json.dumps(value, sort_keys=True, default=str)
    return str(value)[:MAX_PARAM]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def search_all(
    client: MlflowClient,
    experiment_ids: list[str],
    filter_string: str,
    page_size: int = 5000,
    **kwargs: Any,
) -> list[Any]:
    """Every run matching ``filter_string``, all pages (``page_size`` runs per query)."""
    return list(each_run(client, experiment_ids, filter_string, page_size, **kwargs))


SCAN_PAGE = 500
"""Runs per query of a scan that looks at each run once (:func:`each_run`): one run of a tiny
trial (its params, tags and metrics) takes about 30 KB of the driver's memory as MLflow returns
it, so a scan of 10,000 runs read at once would take about 0.3 GB."""


def each_run(
    client: MlflowClient,
    experiment_ids: list[str],
    filter_string: str,
    page_size: int = SCAN_PAGE,
    **kwargs: Any,
) -> Iterator[Any]:
    """The runs matching ``filter_string``, one page at a time (only a page held in memory)."""
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string, max_results=page_size, page_token=token, **kwargs
        )
        yield from page
        token = page.token
        if not token:
            return


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of an embedded ``sqlite:///`` store; None for any other store."""
    prefix = "sqlite:///"
    return Path(tracking_uri.removeprefix(prefix)) if tracking_uri.startswith(prefix) else None


def use_wal(tracking_uri: str) -> None:
    """Set up an embedded SQLite store for many small writes (no-op for other stores).

    MLflow commits every write on its own, and each commit changes a page of every index it
    touches; the key-ordered indexes of params, tags and metrics put each key of a run on a
    different page. In SQLite's default rollback-journal mode every changed page is copied into
    a journal, then written into the database, with syncs: about 1.3 MB written per tiny trial
    for about 15 KB of data (BENCHMARKS 2). In write-ahead-log mode a changed page is appended
    once to the log (and copied into the database at checkpoints): about half the bytes,
    readers do not block the writer. A new store also gets 1 KB pages (SQLite's default until
    2016, 4 KB since): the same page count, a quarter of the bytes. Both settings live in the
    database file, so the MLflow UI and later sweeps use them too.

    This process's connections to the store also sync the log only at checkpoints
    (``synchronous=NORMAL``, SQLite's advice for WAL), not at every commit: consecutive commits
    then share the disk's blocks. A crash of the process or of Ray loses nothing; a power cut
    can lose the commits the kernel had not yet written back (its dirty-page expiry, 30 s by
    default) since the last checkpoint (every :data:`WAL_CHECKPOINT_PAGES` log pages), never
    the database: the log's frames are checksummed and a torn tail is dropped on recovery.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        return
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    _sync_at_checkpoints(path)
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        if new:
            db.execute(f"PRAGMA page_size={SQLITE_PAGE}")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")


def fold_log(tracking_uri: str) -> bool:
    """Copy an embedded store's write-ahead log into the database and empty it (no-op else).

    The end of a sweep: the store is then one file again (``mlflow.db`` alone holds every run,
    for a copy or an archive) and no log of up to :data:`WAL_CHECKPOINT_PAGES` pages is left
    beside it. Best effort: False when a reader (an MLflow UI in the middle of a query) kept
    part of the log; the next writer's checkpoint folds it.
    """
    path = sqlite_path(tracking_uri)
    if path is None or not path.exists():
        return False
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error:
        return False
    return busy == 0


SQLITE_PAGE = 1024
"""Page size of a new embedded store (bytes)."""
WAL_CHECKPOINT_PAGES = 100_000
"""Log pages between checkpoints (SQLite's default is 1,000): a page many commits change, such
as an index leaf every trial writes to, is copied into the database once per checkpoint, so
fewer checkpoints write fewer pages. The log grows to about 100 MB between them (SQLite
removes it when the last connection closes). Measured on 5,000 trials' writes with the
sweep's pattern (2026-12-05): 350 KB written a trial, against 585 KB with 10,000 pages."""
_WAL_STORES: set[str] = set()


def _sync_at_checkpoints(path: Path) -> None:
    """Make this process's SQLAlchemy connections to ``path`` use ``synchronous=NORMAL``."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not _WAL_STORES:
        event.listen(Engine, "connect", _on_connect)
    _WAL_STORES.add(str(path.resolve()))


def _on_connect(connection: Any, record: Any) -> None:
    """SQLAlchemy ``connect`` hook: ``synchronous=NORMAL`` on a store :func:`use_wal` set up."""
    import sqlite3

    if not isinstance(connection, sqlite3.Connection):
        return
    rows = connection.execute("PRAGMA database_list").fetchall()
    if any(row[2] and str(Path(row[2]).resolve()) in _WAL_STORES for row in rows):
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")


class Tracker:
    """The driver's MLflow client for one sweep: parent run, child runs, closing.

    Args:
        tracking_uri: ``sqlite:///...`` or ``http://host:port``.
        experiment: MLflow experiment name (created if missing, before any trial starts).
        artifact_location: Artifact root of a new experiment (embedded default only).
    """

    def __init__(
        self, tracking_uri: str, experiment: str, artifact_location: str | None = None
    ) -> None:
        self.tracking_uri = tracking_uri
        use_wal(tracking_uri)
        # With a tracking server, MLflow's client prints two lines (run and experiment links)
        # and reads the run back for every run it ends: 6,000 lines and 3,000 extra requests in
        # a 3,000-trial sweep. The sweep prints its parent run's link itself; set the variable
        # to "false" to get them back.
        os.environ.setdefault(QUIET_LINKS, "true")
        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id
            if found is not None
            else self.client.create_experiment(experiment, artifact_location=artifact_location)
        )
        self.parent_id: str | None = None
        self.sweep_id: str = ""
        self.resumed = False
        """Whether the parent run was reopened (a resumed sweep)."""
        self.known_trials: dict[str, set[str]] = {}
        """Stage key -> ids of the trials its Tune experiments know (filled at each one's end)."""
        self.open_runs: set[str] = set()
        self.artifact_uris: dict[str, str] = {}
        """Artifact URIs of the trial runs this tracker created and has not ended yet."""
        self._keys: dict[str, str] = {}
        self._loaded: set[str] = set()
        self._creating: set[str] = set()

    def start_parent(
        self,
        sweep_id: str,
        name: str,
        params: Mapping[str, Any],
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create the sweep's parent run (with extra ``tags``), or reopen ``run_id`` (resume)."""
        self.sweep_id = sweep_id
        self.resumed = run_id is not None
        if run_id is None:
            tags = {**(tags or {}), SWEEP_ID: sweep_id, ROLE: "sweep"}
            run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            run_id = run.info.run_id
            self.log_params(run_id, params)
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.parent_id = run_id
        self.open_runs.add(run_id)
        return run_id

    def child(self, key: str, name: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> str:
        """The child run of ``key`` (a trial): found by its tag if it exists, else created."""
        run_id = self.find_or_create(key, name, params, tags)
        self.open_runs.add(run_id)
        return run_id

    def find_or_create(
        self, key: str, name: str, params: Mapping[str, Any], tags: Mapping[str, Any]
    ) -> str:
        """The run tagged ``key`` (reopened if it had ended), else a new child run; its id."""
        run_id = self._keys.get(key) or self._find(key)
        if run_id is None:
            all_tags = {
                PARENT: self.parent_id,
                TRIAL_KEY: key,
                SWEEP_ID: self.sweep_id,
                ROLE: "trial",
                **tags,
            }
            self._creating.add(key)
            run = self.client.create_run(
                self.experiment_id, run_name=name, tags={k: _text(v) for k, v in all_tags.items()}
            )
            run_id = self._keys[key] = run.info.run_id
            self.artifact_uris[run_id] = run.info.artifact_uri
            Tracker.log_params(self, run_id, params)  # now, also in a queued subclass
            self._creating.discard(key)
        elif key in self._creating:  # a creation retried after an error: the run exists
            Tracker.log_params(self, run_id, params)
            self._creating.discard(key)
        elif self.client.get_run(run_id).info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        self._keys[key] = run_id
        return run_id

    def _find(self, key: str) -> str | None:
        """The run of trial ``key``: the first lookup of a sweep reads all its trial runs at once.

        One query per sweep, not one per trial (a tag search costs time in the number of runs,
        so per-trial searches made a 10,000-trial sweep quadratic). Runs this tracker creates
        are added as they are made; nothing else creates trial runs of a live sweep. A key whose
        creation raised is searched on its own: the server may have made the run and lost the
        answer (an outage), and the retry must find it, not make a second one.
        """
        if key in self._creating:
            runs = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{TRIAL_KEY}` = '{key}'", max_results=1
            )
            return runs[0].info.run_id if runs else None
        if key not in self._keys:
            sweep = key.split("/", 1)[0]
            if sweep in self._loaded:
                return None
            self._loaded.add(sweep)
            for run in self.search_all(f"tags.`{TRIAL_KEY}` LIKE '{sweep}/%'"):
                self._keys.setdefault(run.data.tags[TRIAL_KEY], run.info.run_id)
        return self._keys.get(key)

    def search_all(self, filter_string: str) -> list[Any]:
        """Every run of the experiment that matches ``filter_string`` (all pages)."""
        return search_all(self.client, [self.experiment_id], filter_string)

    def children(self, where: str = "") -> Iterator[Any]:
        """The child runs of the parent (``where``: more conditions, ANDed), page by page."""
        condition = f"tags.`{PARENT}` = '{self.parent_id}'" + (f" AND {where}" if where else "")
        return each_run(self.client, [self.experiment_id], condition)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params (values as text; dicts and lists as JSON)."""
        items = [Param(k, _text(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, Any], step: int = 0, stamp: int | None = None
    ) -> None:
        """Log the finite numeric metrics at ``step`` (non-finite ones are skipped)."""
        stamp = stamp or _now_ms()
        items = [Metric(k, float(v), stamp, step) for k, v in metrics.items() if _finite(v)]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags (values as text)."""
        self.client.log_batch(run_id, tags=[RunTag(k, _text(v)) for k, v in tags.items()])

    def log_table(self, run_id: str, data: Mapping[str, list[Any]], artifact_file: str) -> None:
        """A column-wise table as a JSON artifact (what the MLflow UI's table view reads).

        Logging the same ``artifact_file`` again REPLACES it. (MLflow's ``log_table`` appends
        to an existing table: a sweep resumed after a crash in its report got every row of
        ``comparison.json`` twice.) The file has ``log_table``'s format and the run's
        ``mlflow.loggedArtifacts`` tag lists it, as ``log_table`` does.
        """
        entry = self._upload_table(run_id, data, artifact_file)
        logged = json.loads(self.client.get_run(run_id).data.tags.get(LOGGED_TABLES, "[]"))
        if entry not in logged:
            self.client.set_tag(run_id, LOGGED_TABLES, json.dumps([*logged, entry]))

    def _upload_table(
        self, run_id: str, data: Mapping[str, list[Any]], artifact_file: str
    ) -> dict[str, str]:
        """Upload ``data`` as ``artifact_file`` (``log_table``'s format); its tag entry."""
        import pandas as pd

        folder, name = posixpath.split(posixpath.normpath(artifact_file))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            pd.DataFrame(dict(data)).to_json(path, orient="split", index=False, date_format="iso")
            self._upload(run_id, str(path), folder or None)
        return {"path": artifact_file, "type": "table"}

    def _upload(self, run_id: str, local_path: str, folder: str | None) -> None:
        """Upload a file to a run's artifacts; a run this tracker created needs no lookup.

        ``MlflowClient.log_artifact`` reads the whole run back (``get_run``: its tags, params
        and latest metrics) to learn its artifact URI, once per run: about 10 ms a trial on an
        embedded store of 5,000 trial runs, or one more request to a server. The URI of a
        run made here is known from its creation.
        """
        uri = self.artifact_uris.get(run_id)
        if uri is None or not self.tracking_uri.startswith(("sqlite:", "http:", "https:")):
            self.client.log_artifact(run_id, local_path, folder)
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        get_artifact_repository(uri, tracking_uri=self.tracking_uri).log_artifact(
            local_path, folder
        )

    def finish(
        self,
        run_id: str,
        status: str,
        tags: Mapping[str, Any],
        metrics: Mapping[str, Any],
        step: int,
        table: tuple[Mapping[str, list[Any]], str] | None = None,
    ) -> None:
        """End a trial's run in three writes: its table, one batch of tags and metrics, the end.

        ``table`` is ``(data, artifact_file)``, the run's only table (the tag lists just it).
        """
        self._finish(run_id, status, tags, metrics, step, table)
        self.open_runs.discard(run_id)

    def _finish(
        self,
        run_id: str,
        status: str,
        tags: Mapping[str, Any],
        metrics: Mapping[str, Any],
        step: int,
        table: Any = None,
    ) -> None:
        tags = {k: _text(v) for k, v in tags.items()}
        if table is not None:
            tags[LOGGED_TABLES] = json.dumps([self._upload_table(run_id, *table)])
        self.artifact_uris.pop(run_id, None)  # the run ends: nothing more is uploaded to it
        stamp = _now_ms()
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items() if _finite(v)],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        self.client.set_terminated(run_id, status=status)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """A text artifact."""
        self.client.log_text(run_id, text, artifact_file)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Upload a local file as an artifact (into the folder ``artifact_path`` if given)."""
        self.client.log_artifact(run_id, local_path, artifact_path)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        """End a run with ``status`` (FINISHED, FAILED or KILLED)."""
        self.client.set_terminated(run_id, status=status)
        self.artifact_uris.pop(run_id, None)
        self.open_runs.discard(run_id)

    def close_all(self, status: str) -> None:
        """End every run still open (children first, the parent last) with ``status``."""
        for run_id in sorted(self.open_runs, key=lambda r: r == self.parent_id):
            self.end(run_id, status)

    def supersede(self, stage: str, live: set[str]) -> int:
        """End KILLED, tagged :data:`SUPERSEDED`, the runs of ``stage`` no live trial owns.

        Tune snapshots its state every :func:`~grasplab.platform.sweep.state_period`; a trial
        created after the last snapshot of a killed driver is unknown to the resumed sweep,
        which samples again in its place. The first trial's run (possibly FINISHED) would
        otherwise stand beside its replacement's as a duplicate in the MLflow UI.

        Args:
            stage: The stage key (the runs' ``stage`` tag).
            live: Trial ids of the resumed experiment (every trial Tune knows).

        Returns:
            How many runs were superseded.
        """
        gone = [
            r.info.run_id
            for r in self.children(f"tags.`{ROLE}` = 'trial' AND tags.stage = '{stage}'")
            if r.data.tags.get("trial_id") not in live and SUPERSEDED not in r.data.tags
        ]
        for run_id in gone:
            self.client.set_tag(run_id, SUPERSEDED, SUPERSEDED_WHY)
            self.client.set_terminated(run_id, status="KILLED")
            self.open_runs.discard(run_id)
        return len(gone)

    def end_orphans(self, status: str = "KILLED") -> int:
        """End child runs still RUNNING that no live trial owns (left by a killed driver)."""
        orphans = [
            r.info.run_id for r in self.children(RUNNING) if r.info.run_id not in self.open_runs
        ]
        for run_id in orphans:
            self.client.set_terminated(run_id, status=status)
        return len(orphans)


def report_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """A trial report's metrics as its run logs them (:data:`TRIAL_METRICS`, :data:`PARTIAL`)."""
    unpacked = figures(result)
    return {PARTIAL.get(k, k): unpacked.get(k) for k in TRIAL_METRICS}


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def records_table(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Column-wise table of per-episode records (what ``log_table`` takes)."""
    records = list(records)
    columns = list(records[0]) if records else []
    return {c: [r[c] for r in records] for c in columns}


_TRACKERS: dict[str, Tracker] = {}
"""Live trackers by sweep id: a callback unpickled by ``Tuner.restore`` finds its tracker here."""


def register(tracker: Tracker) -> None:
    """Make ``tracker`` the live tracker of its sweep id (for restored callbacks)."""
    _TRACKERS[tracker.sweep_id] = tracker


class TrialLogger(tune.Callback):
    """Tune callback (driver side): one MLflow child run per trial of one stage.

    Tune pickles its run config, callbacks included, and ``Tuner.restore`` unpickles them in a
    new driver: the callback therefore holds only plain data and the sweep id, and looks its
    :class:`Tracker` up in this process's registry (:func:`register`).

    Args:
        sweep_id: The sweep (its tracker is registered and its parent run open).
        stage: The stage (its key names the runs; its planners give the full configs).
        params: Variant label -> params shared by its trials (planner, protocol, world model,
            git SHA).
        progress: Feed the sweep's live progress (:mod:`grasplab.platform.progress`).
        n_chunks: Reports a complete trial makes (chunks of the tuning split); a trial that ends
            with fewer was stopped early by the scheduler. ``None``: never tagged early-stopped.

    When a trial's run ends it is tagged ``early_stopped`` (``"true"``/``"false"``) and
    ``episodes_scored`` (episodes its success rate is based on), also logged as a metric.
    """

    n_chunks: int | None = None  # a callback pickled before this field existed has none

    def __init__(
        self,
        sweep_id: str,
        stage: Any,
        params: Mapping[str, Mapping[str, Any]],
        progress: bool = True,
        n_chunks: int | None = None,
    ) -> None:
        self.sweep_id = sweep_id
        self.stage = stage
        self.params = {k: dict(v) for k, v in params.items()}
        self.progress = progress
        self.n_chunks = n_chunks
        self.runs: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "runs": {}}

    @property
    def tracker(self) -> Tracker:
        """This process's tracker of the sweep."""
        return _TRACKERS[self.sweep_id]

    def key(self, trial: Any) -> str:
        """The trial's stable key: sweep id / stage / Tune trial id."""
        return trial_key(self.sweep_id, self.stage.key, trial.trial_id)

    def run_of(self, trial: Any) -> str:
        """The trial's child run (created, or found by its key, on first sight)."""
        if trial.trial_id not in self.runs:
            label = trial.config[LABEL]
            sampled = {k: v for k, v in trial.config.items() if k != LABEL}
            full = self.stage.planner(label).trial_config(sampled)
            tags = {
                "stage": self.stage.key,
                "variant": label,
                "trial_id": trial.trial_id,
                "tuned": sorted(sampled),
            }
            name = f"{self.stage.outcome_key(label)}-{trial.trial_id}"
            params = {**self.params[label], **full}
            self.runs[trial.trial_id] = self.tracker.child(self.key(trial), name, params, tags)
        return self.runs[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Create (or reopen) the child run."""
        self.run_of(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """Log the report's metrics at its step (training iteration); time the driver's share.

        A complete trial's last report (every chunk scored) is logged with the run's end
        instead, in the same batch (:meth:`_ended`): one write less per trial.
        """
        started = time.perf_counter()
        if not self.last_report(result):
            self.tracker.log_metrics(
                self.run_of(trial), report_metrics(result), step=int(result["training_iteration"])
            )
        live.of(self.sweep_id).timed(time.perf_counter() - started)

    def last_report(self, result: Mapping[str, Any]) -> bool:
        """Whether ``result`` is a complete trial's last report (its every chunk scored)."""
        chunks = int(result.get("chunks", 0) or 0)  # a plain key (not packed in the figures)
        return self.n_chunks is not None and chunks >= self.n_chunks

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Refresh the live status line (printed every few seconds, not per event)."""
        if self.progress:
            live.of(self.sweep_id).trials(trials)

    def end_tags(self, result: Mapping[str, Any]) -> dict[str, str]:
        """``early_stopped`` and ``episodes_scored`` of a trial whose last report is ``result``."""
        chunks = int(result.get("chunks", 0) or 0)
        early = self.n_chunks is not None and 0 < chunks < self.n_chunks
        return {
            "early_stopped": "true" if early else "false",
            "episodes_scored": str(int(result.get("n", 0) or 0)),
            "chunks": str(chunks),
        }

    def _ended(self, run_id: str, trial: Any, status: str, table: Any = None) -> None:
        result = figures(trial.last_result)
        tags = self.end_tags(result)
        final = {"episodes_scored": int(tags["episodes_scored"])}
        if trial.last_result and self.last_report(trial.last_result):
            final.update(report_metrics(trial.last_result))  # not logged on its own
        if status == "FINISHED" and tags["early_stopped"] == "false":
            final.update({k: result.get(k) for k in PARTIAL})  # scored on every episode
        step = int(result.get("training_iteration", 0) or 0)
        self.tracker.finish(run_id, status, tags, final, step, table)
        if self.progress:
            live.of(self.sweep_id).trial_ended(tags["early_stopped"] == "true", status == "FAILED")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """End the run FINISHED with its per-episode table and its early-stopping tags.

        The records come from the trial's stored checkpoints (its result store), not from its
        result: Tune's state holds only the aggregates.
        """
        records = trial_records(trial)
        table = (records_table(records), "episodes.json") if records else None
        self._ended(self.run_of(trial), trial, "FINISHED", table)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Tag, then end the run FAILED (Tune has given up on the trial)."""
        self._ended(self.run_of(trial), trial, "FAILED")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Note the trials the experiment knows; give the live progress its last counts.

        :attr:`Tracker.known_trials`: a resumed sweep supersedes the runs of the other trials
        once the stage's last part has ended (:func:`grasplab.platform.sweep.supersede`).
        """
        self.tracker.known_trials.setdefault(self.stage.key, set()).update(
            t.trial_id for t in trials
        )
        if self.tracker.resumed:
            self.end_restored(trials)
        if self.progress:
            live.of(self.sweep_id).trials(trials, force=True)

    def end_restored(self, trials: list) -> None:
        """End the runs of trials Tune restored as ended but whose end the killed driver lost.

        A trial that ended just before the driver was killed can be ended in Tune's last state
        while its run's end was still in the driver's MLflow queue: the resumed experiment never
        runs it again (no callback), and its run, still RUNNING, would be ended KILLED without
        its last metrics. One query for the stage's RUNNING runs; only in a resumed sweep.
        """
        ended = [
            t for t in trials if t.status in ("TERMINATED", "ERROR") and t.trial_id not in self.runs
        ]
        if not ended:
            return
        try:
            where = f"tags.stage = '{self.stage.key}' AND {RUNNING}"
            running = {r.data.tags.get("trial_id") for r in self.tracker.children(where)}
        except Exception:  # noqa: BLE001 - MLflow down: close() ends them KILLED, as before
            return
        for trial in ended:
            if trial.trial_id in running:
                if trial.status == "TERMINATED":
                    self.on_trial_complete(0, trials, trial)
                else:
                    self.on_trial_error(0, trials, trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial failed and will be retried: keep its run, count the retry."""
        self.tracker.set_tags(self.run_of(trial), {"retries": trial.num_failures})


TEST_METRICS = (
    "success_rate",
    "ci_low",
    "ci_high",
    "n",
    "median_time_to_success",
    "median_steps_to_success",
    "final_distance",
    "model_steps",
    "wall_time",
)
"""Metrics of a ``test`` child run (the held-out test goals), under these plain names."""


def log_test_run(
    tracker: Tracker,
    key: str,
    name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, Any],
) -> None:
    """One held-out test result as its own FINISHED child run (role ``test``).

    A planner variant's pick, its default config, or the random floor: the MLflow UI's runs
    table, chart and compare views put these side by side (search
    ``tags.`grasplab.role` = 'test'``). Found again by ``key`` on resume, never duplicated.
    """
    run = tracker.child(key, name, params, {**tags, ROLE: "test"})
    tracker.log_metrics(run, {k: metrics.get(k) for k in TEST_METRICS})
    tracker.end(run, "FINISHED")


def trial_key(sweep_id: str, stage: str, trial_id: str) -> str:
    """The ``grasplab.trial_key`` tag of a trial's child run."""
    return f"{sweep_id}/{stage}/{trial_id}"
