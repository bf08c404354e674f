"""MLflow writes that never block Tune's loop and survive a tracking-server outage.

:class:`QueuedTracker` is the sweep driver's :class:`~grasplab.platform.tracking.Tracker`: every
write (child run, params, metrics, tags, tables, artifacts, end) goes into an ordered queue that
one background thread applies. Tune's callbacks only append to the queue (microseconds), so
logging never stalls the trial loop.

When a write fails and the tracking server does not answer ``/health``, the writer keeps the
write at the head of the queue, retries with back-off and prints a status line (``MLflow ...
unreachable ... N writes queued``): the sweep goes on while logging is paused. A write that fails
while the server is healthy is a real rejection: it is reported and skipped, never retried
forever. Writes are plain data, so what is still queued when a sweep must stop is saved to a
journal (``mlflow_pending.json`` in the sweep folder) and replayed by ``--resume``.

Child runs are addressed by their trial key (``sweep/stage/trial``): creating one is
find-or-create on that tag, so a retried creation never duplicates a run.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grasplab.platform.tracking import RUNNING, TRIAL_KEY, Tracker, _now_ms

JOURNAL = "mlflow_pending.json"
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0)
"""Pauses between retries of the write at the head of the queue during an outage."""
STATUS_EVERY_S = 30.0


class TrackingOutage(RuntimeError):
    """The tracking server stayed unreachable longer than the sweep may wait."""


def server_answers(tracking_uri: str, timeout: float = 5.0) -> bool:
    """True when an ``http(s)`` tracking server answers ``/health`` (always True for SQLite)."""
    if not tracking_uri.startswith("http"):
        return True
    try:
        with urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def _transient(error: BaseException, tracking_uri: str) -> bool:
    """Is ``error`` an outage (retry later) rather than a rejection (report and skip)?"""
    if not tracking_uri.startswith("http"):
        return "locked" in str(error).lower()  # SQLite busy: another writer holds the DB
    return not server_answers(tracking_uri)


class QueuedTracker(Tracker):
    """A :class:`Tracker` whose writes are queued and applied by a background thread.

    Args:
        tracking_uri: ``sqlite:///...`` or ``http://host:port``.
        experiment: MLflow experiment (created if missing, synchronously).
        artifact_location: Artifact root of a new experiment (embedded default only).
        outage_timeout_s: How long :meth:`flush` waits through an outage before raising
            :class:`TrackingOutage`.
        status: Where status lines go (default: ``print`` with flush).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_location: str | None = None,
        *,
        outage_timeout_s: float = 3600.0,
        status: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(tracking_uri, experiment, artifact_location)
        self.outage_timeout_s = outage_timeout_s
        self.status = status or (lambda line: print(line, flush=True))
        self.ids: dict[str, str] = {}
        self.rejected: list[str] = []
        self.down_since: float | None = None
        self._ops: deque[tuple[str, dict[str, Any]]] = deque()
        self._cv = threading.Condition()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the queue ---------------------------------------------------------------------------

    def submit(self, op: str, **args: Any) -> None:
        """Queue one write (``op`` names a ``_do_<op>`` method; ``args`` are plain data)."""
        with self._cv:
            self._ops.append((op, args))
            self._cv.notify_all()
            if self._thread is None or not self._thread.is_alive():
                self._abort.clear()
                self._thread = threading.Thread(
                    target=self._loop, name="grasplab-mlflow-writer", daemon=True
                )
                self._thread.start()

    def pending(self) -> int:
        """Writes not yet applied."""
        with self._cv:
            return len(self._ops)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._ops:
                    if not self._cv.wait(timeout=5.0) and not self._ops:
                        self._thread = None
                        return
                op = self._ops[0]
            if not self._apply(op):
                return  # aborted: the op stays queued (journal)
            with self._cv:
                self._ops.popleft()
                self._cv.notify_all()

    def _apply(self, op: tuple[str, dict[str, Any]]) -> bool:
        """Apply one write, retrying through an outage; False when aborted first."""
        attempt, last_status = 0, 0.0
        while not self._abort.is_set():
            try:
                getattr(self, f"_do_{op[0]}")(**op[1])
            except Exception as error:  # noqa: BLE001 - classified below
                if not _transient(error, self.tracking_uri):
                    self.rejected.append(f"{op[0]}: {error}")
                    self.status(f"[mlflow] a {op[0]} write was rejected and skipped: {error}")
                    return True
                now = time.monotonic()
                if self.down_since is None:
                    self.down_since = now
                if now - last_status >= STATUS_EVERY_S or attempt == 0:
                    last_status = now
                    self.status(
                        f"[mlflow] {self.tracking_uri} unreachable for "
                        f"{now - self.down_since:.0f} s: logging paused, {self.pending()} writes "
                        "queued; the sweep goes on and the writes are retried"
                    )
                self._abort.wait(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
                continue
            if self.down_since is not None:
                self.status(
                    f"[mlflow] {self.tracking_uri} reachable again after "
                    f"{time.monotonic() - self.down_since:.0f} s; {self.pending()} queued writes "
                    "being applied"
                )
                self.down_since = None
            return True
        return False

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued write is applied.

        Raises:
            TrackingOutage: The server has been unreachable for longer than ``timeout``
                (default ``outage_timeout_s``).
        """
        limit = self.outage_timeout_s if timeout is None else timeout
        started = last_status = time.monotonic()
        with self._cv:
            queued = len(self._ops)
            while self._ops:
                self._cv.wait(timeout=0.5)
                now = time.monotonic()
                if self.down_since is None and now - last_status >= STATUS_EVERY_S:
                    last_status = now  # reachable but behind (a busy server, a big sweep)
                    done = max(0, queued - len(self._ops))
                    self.status(
                        f"[mlflow] waiting for {len(self._ops)} queued writes to "
                        f"{self.tracking_uri} ({done / (now - started):.0f} applied/s)"
                    )
                if self.down_since is not None and now - self.down_since > limit:
                    raise TrackingOutage(
                        f"MLflow at {self.tracking_uri} unreachable for "
                        f"{time.monotonic() - self.down_since:.0f} s (limit {limit:.0f} s); "
                        f"{len(self._ops)} writes not applied"
                    )

    def stop(self) -> None:
        """Stop the writer thread (queued writes stay queued: see :meth:`save_journal`)."""
        self._abort.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=30)

    def save_journal(self, folder: Path) -> int:
        """Write the queued writes to ``folder/JOURNAL`` (for ``--resume``); returns their count."""
        with self._cv:
            ops = list(self._ops)
        path = Path(folder) / JOURNAL
        if not ops:
            path.unlink(missing_ok=True)
            return 0
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"ids": self.ids, "ops": ops}, default=str))
        os.replace(tmp, path)
        return len(ops)

    def replay_journal(self, folder: Path) -> int:
        """Queue the writes a stopped sweep left in ``folder/JOURNAL``; returns their count."""
        path = Path(folder) / JOURNAL
        if not path.exists():
            return 0
        data = json.loads(path.read_text())
        self.ids.update(data.get("ids", {}))
        for op, args in data.get("ops", []):
            self.submit(op, **args)
        self.flush()
        path.unlink(missing_ok=True)
        return len(data.get("ops", []))

    # --- queued writes (what the sweep calls) ------------------------------------------------

    def child(self, key: str, name: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> str:
        """Queue find-or-create of the child run of ``key``; returns ``key`` as its handle."""
        self.submit("child", key=key, name=name, params=dict(params), tags=dict(tags))
        self.open_runs.add(key)
        return key

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Queue params."""
        self.submit("call", method="log_params", run=run_id, kwargs={"params": dict(params)})

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, Any], step: int = 0, stamp: int | None = None
    ) -> None:
        """Queue metrics, time-stamped now."""
        kwargs = {"metrics": dict(metrics), "step": step, "stamp": stamp or _now_ms()}
        self.submit("call", method="log_metrics", run=run_id, kwargs=kwargs)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Queue tags."""
        self.submit("call", method="set_tags", run=run_id, kwargs={"tags": dict(tags)})

    def log_table(self, run_id: str, data: Mapping[str, list[Any]], artifact_file: str) -> None:
        """Queue a table artifact."""
        kwargs = {"data": dict(data), "artifact_file": artifact_file}
        self.submit("call", method="log_table", run=run_id, kwargs=kwargs)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Queue a text artifact."""
        kwargs = {"text": text, "artifact_file": artifact_file}
        self.submit("call", method="log_text", run=run_id, kwargs=kwargs)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Queue the upload of a local file (it must still exist when the write is applied)."""
        kwargs = {"local_path": local_path, "artifact_path": artifact_path}
        self.submit("call", method="log_artifact", run=run_id, kwargs=kwargs)

    def finish(
        self,
        run_id: str,
        status: str,
        tags: Mapping[str, Any],
        metrics: Mapping[str, Any],
        step: int,
        table: tuple[Mapping[str, list[Any]], str] | None = None,
    ) -> None:
        """Queue the end of a trial's run (see :meth:`Tracker.finish`)."""
        kwargs = {
            "status": status,
            "tags": dict(tags),
            "metrics": dict(metrics),
            "step": step,
            "table": None if table is None else [dict(table[0]), table[1]],
        }
        self.submit("call", method="_finish", run=run_id, kwargs=kwargs)
        self.open_runs.discard(run_id)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        """Queue the end of a run."""
        self.submit("call", method="end", run=run_id, kwargs={"status": status})
        self.open_runs.discard(run_id)

    def run_id(self, handle: str) -> str | None:
        """The MLflow run id of a handle (a trial key or a run id), once its run exists."""
        if handle in self.ids:
            return self.ids[handle]
        if "/" not in handle:
            return handle
        found = self._find(handle)
        if found is not None:
            self.ids[handle] = found
        return found

    def supersede(self, stage: str, live: set[str]) -> int:
        """Apply the queue (the runs it creates exist then), then supersede (see Tracker).

        Raises:
            TrackingOutage: MLflow is unreachable now (nothing is waited for).
        """
        if self.down_since is not None:
            raise TrackingOutage(f"MLflow at {self.tracking_uri} unreachable")
        self.flush()
        return Tracker.supersede(self, stage, live)

    def end_orphans(self, status: str = "KILLED", timeout: float | None = None) -> int:
        """Apply the queue, then end child runs RUNNING that no live trial owns."""
        self.flush(timeout)
        owned = {self.ids.get(h, h) for h in self.open_runs}
        orphans = [r.info.run_id for r in self.children(RUNNING) if r.info.run_id not in owned]
        for run_id in orphans:
            self.client.set_terminated(run_id, status=status)
        return len(orphans)

    def close_all(self, status: str, timeout: float | None = None) -> None:
        """Queue the end of every open run (children first, the parent last), then apply all."""
        for handle in sorted(self.open_runs, key=lambda r: r == self.parent_id):
            self.end(handle, status)
        self.flush(timeout)

    # --- what the writer thread applies ------------------------------------------------------

    def _do_child(self, key: str, name: str, params: dict[str, Any], tags: dict[str, Any]) -> None:
        self.ids[key] = self.find_or_create(key, name, params, tags)

    def _do_call(self, method: str, run: str, kwargs: dict[str, Any]) -> None:
        run_id = self.run_id(run)
        if run_id is None:
            raise LookupError(f"no MLflow run for {run!r} ({TRIAL_KEY} not found)")
        if method == "end":  # not Tracker.end: open_runs belongs to the sweep's thread
            self.client.set_terminated(run_id, status=kwargs["status"])
            self.artifact_uris.pop(run_id, None)
            return
        getattr(Tracker, method)(self, run_id, **kwargs)
