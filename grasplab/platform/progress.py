"""Live progress of a sweep: a line per phase and a periodic status line per stage.

The driver prints one line when a phase starts (Ray start-up, pool placement, each stage's
tuning, test-goal evaluation, report) and, while a stage tunes, a status line every
``every`` seconds and when the stage ends: trials done / total (early-stopped ones counted),
trials running, the best success so far per planner variant with the episodes it was scored
on, elapsed time and an ETA. On a terminal the status line updates in place; in logs (no TTY:
CI, ``ray job`` logs) each status line is a plain new line, so nothing fills with carriage
returns.

A :class:`SweepProgress` is registered by sweep id (:func:`register`); Tune's
:class:`~grasplab.platform.tracking.TrialLogger` callback, which Tune pickles, finds it with
:func:`of`. It also times the callback's own work per trial result (what the driver adds to
Tune's loop), which ``grasplab bench platform`` reports.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from grasplab.platform.search import LABEL

EVERY_S = 15.0
"""Seconds between two status lines of a stage (non-TTY)."""


def clock(seconds: float) -> str:
    """``1h02m03s``, ``2m05s`` or ``7s``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0.0)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


@dataclass
class Best:
    """Best success so far of one planner variant (ties: more episodes)."""

    success: float = -1.0
    n: int = 0

    def offer(self, success: float, n: int) -> None:
        """Keep ``(success, n)`` when it beats the current best."""
        if math.isfinite(success) and (success, n) > (self.success, self.n):
            self.success, self.n = success, n

    def text(self) -> str:
        """``62% (n=8)`` or ``-``."""
        return "-" if self.success < 0 else f"{100 * self.success:.0f}% (n={self.n})"


def best_of(points: Iterable[tuple[int, float]]) -> Best:
    """Best success among the trials scored on the most episodes so far (``(n, success)``).

    A trial early in its episodes (or stopped early) does not outrank one scored on more.
    """
    points = [(n, s) for n, s in points if math.isfinite(s)]
    best = Best()
    if points:
        most = max(n for n, _ in points)
        best.offer(max(s for n, s in points if n == most), most)
    return best


def better(a: Best, b: Best) -> Best:
    """The best scored on more episodes; on equal episodes, the higher success."""
    return max(a, b, key=lambda x: (x.n, x.success))


@dataclass
class StageStatus:
    """Counters of the stage being tuned."""

    key: str
    total: int
    labels: list[str]
    started: float
    done: int = 0
    early: int = 0
    errors: int = 0
    running: int = 0
    best: dict[str, Best] = field(default_factory=dict)
    past_done: int = 0
    """Trials ended in the stage's earlier parts (Tune experiments)."""
    past_best: dict[str, Best] = field(default_factory=dict)
    """Per variant, the best of the stage's earlier parts."""


class SweepProgress:
    """Phase and status lines of one sweep, and the driver's per-result callback timings.

    Args:
        enabled: Print anything at all (``--quiet`` turns it off; timings are still kept).
        every: Seconds between status lines of a stage.
        out: Where lines go (default ``sys.stdout``).
        tty: Update the status line in place (default: ``out.isatty()``).
        now: Clock (seconds).
        kind: The word in front of phase lines (``sweep``; ``study`` for ``grasplab ablate``).
    """

    def __init__(
        self,
        enabled: bool = True,
        every: float = EVERY_S,
        out: TextIO | None = None,
        tty: bool | None = None,
        now: Callable[[], float] = time.monotonic,
        kind: str = "sweep",
    ) -> None:
        self.enabled, self.every, self.now, self.kind = enabled, every, now, kind
        self.out = out or sys.stdout
        self.tty = bool(tty if tty is not None else getattr(self.out, "isatty", lambda: False)())
        self.started = now()
        self.stage: StageStatus | None = None
        self._last_line = -math.inf
        self._open_line = False
        self.callback_s: list[float] = []
        """Seconds the TrialLogger spent per trial result (driver side)."""

    # --- output ------------------------------------------------------------------------------

    def _write(self, line: str, status: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty and status:
            self.out.write("\r\x1b[K" + line)
            self._open_line = True
        else:
            if self._open_line:
                self.out.write("\n")
                self._open_line = False
            self.out.write(line + "\n")
        self.out.flush()

    def _write_raw(self, text: str) -> None:
        if self.enabled:
            self.out.write(text)
            self.out.flush()
            self._open_line = False

    def phase(self, text: str) -> None:
        """One line: ``[sweep 1m05s] text``."""
        self._write(f"[{self.kind} {clock(self.now() - self.started)}] {text}")

    # --- a stage -----------------------------------------------------------------------------

    def start_stage(self, key: str, labels: Iterable[str], total: int, text: str) -> None:
        """A stage's tuning begins: its phase line, then status lines until :meth:`end_stage`."""
        labels = list(labels)
        self.stage = StageStatus(key, total, labels, self.now(), best={k: Best() for k in labels})
        self._last_line = self.now()
        self.phase(text)

    def trials(self, trials: Iterable[Any], *, force: bool = False) -> None:
        """Print a status line when it is time, its counters read from Tune's trial list.

        Called at every step of Tune's loop; the list holds every trial of the stage's current
        part (Tune experiment), so it is read only when a line is due (or with ``force``: the
        part's last counts, carried into the next part and the line :meth:`end_stage` prints),
        not at every step: at 1,000 trials a read takes a millisecond, and the loop steps many
        times a second.
        """
        stage = self.stage
        if stage is None:
            return
        due = self.now() - self._last_line >= (1.0 if self.tty else self.every)
        if not (due or force):
            return
        trials = list(trials)
        stage.running = sum(t.status == "RUNNING" for t in trials)
        ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        stage.done = max(stage.done, stage.past_done + ended)  # restored trials ended before
        scored: dict[str, list[tuple[int, float]]] = {k: [] for k in stage.labels}
        for t in trials:
            result = t.last_result or {}
            label = (t.config or {}).get(LABEL)
            if label in scored and "success_rate" in result:
                scored[label].append((int(result.get("n", 0) or 0), float(result["success_rate"])))
        for label, points in scored.items():
            stage.best[label] = better(stage.past_best.get(label, Best()), best_of(points))
        if force:  # the end of a part: the next part's trial list starts empty
            stage.past_done, stage.past_best = stage.done, dict(stage.best)
        if due:
            self.status()

    def trial_ended(self, early_stopped: bool, error: bool = False) -> None:
        """Count a finished trial (complete, stopped early by ASHA, or failed)."""
        if self.stage is None:
            return
        self.stage.done += 1
        self.stage.early += early_stopped
        self.stage.errors += error

    def line(self) -> str:
        """The stage's status line."""
        stage = self.stage
        if stage is None:
            return ""
        elapsed = self.now() - stage.started
        eta = elapsed / stage.done * (stage.total - stage.done) if stage.done else math.inf
        extra = [f"{stage.early} early-stopped"] if stage.early else []
        extra += [f"{stage.errors} failed"] if stage.errors else []
        extra += [f"{stage.running} running"]
        best = ", ".join(f"{k} {stage.best[k].text()}" for k in stage.labels)
        return (
            f"  [{stage.key}] {stage.done}/{stage.total} trials done ({', '.join(extra)}) | "
            f"best so far: {best} | {clock(elapsed)} elapsed, ETA "
            f"{clock(0) if stage.done == stage.total else clock(eta)}"
        )

    def status(self) -> None:
        """Print the status line now."""
        self._last_line = self.now()
        self._write(self.line(), status=True)

    def end_stage(self) -> None:
        """The stage's final status line (a plain line, also on a TTY)."""
        if self.stage is not None:
            if self.tty and self._open_line:  # overwrite the in-place line, then end it
                self._write(self.line(), status=True)
                self._write_raw("\n")
            else:
                self._write(self.line())
        self.stage = None

    # --- timings -----------------------------------------------------------------------------

    def timed(self, seconds: float) -> None:
        """Record the driver-side seconds one trial result cost the callback."""
        self.callback_s.append(seconds)


_LIVE: dict[str, SweepProgress] = {}
_QUIET = SweepProgress(enabled=False)


def register(sweep_id: str, progress: SweepProgress) -> None:
    """Make ``progress`` the live reporter of ``sweep_id`` (found by :func:`of`)."""
    _LIVE[sweep_id] = progress


def unregister(sweep_id: str) -> None:
    """Forget the reporter of ``sweep_id``."""
    _LIVE.pop(sweep_id, None)


def of(sweep_id: str) -> SweepProgress:
    """The live reporter of ``sweep_id`` (a silent one when none is registered)."""
    return _LIVE.get(sweep_id, _QUIET)
