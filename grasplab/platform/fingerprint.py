"""The runtime fingerprint: which machine and software made a number.

:func:`fingerprint` returns a plain dict of strings (Python, torch with its CUDA and cuDNN
versions, the planning device and dtype, ray, mlflow, optuna and numpy versions, the OS
platform, the CPU model, torch's thread count, the git SHA and whether the tree was dirty).
Library versions are read with :mod:`importlib.metadata`, so that a library is never imported
just to be named; torch is imported (it is loaded already wherever a number is made). Nothing
here fails: what cannot be found reads ``unknown``.

Every sweep parent run, study run and training run records it as ``fingerprint.<key>`` tags and
a ``fingerprint.json`` artifact (:func:`tags`); the printed summaries show :func:`header_lines`;
``grasplab report`` warns when it lines up sweeps whose fingerprints differ (:func:`differing`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PREFIX = "fingerprint."
"""Prefix of the fingerprint's tags on an MLflow run."""
ARTIFACT = "fingerprint.json"
"""The fingerprint's artifact file on an MLflow run."""
UNKNOWN = "unknown"
LIBRARIES = ("torch", "ray", "mlflow", "optuna", "numpy")
COMPARED_IGNORED = ("git_dirty",)
"""Keys :func:`differing` does not compare (the dirty flag is reported beside the SHA)."""


def version(package: str) -> str:
    """The installed version of ``package`` (its distribution name), else ``unknown``."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or UNKNOWN


@functools.cache
def git_state(cwd: Path | None = None) -> tuple[str, str]:
    """``(sha, dirty)`` of the code's repository; ``dirty`` is ``true``/``false``.

    Without git or a repository (a Ray job's working dir has no ``.git``), the SHA falls back to
    ``$GRASPLAB_GIT_SHA`` (a trailing ``-dirty`` there sets the flag), else both are
    ``unknown``.
    """
    cwd = cwd or Path(__file__).resolve().parents[2]
    try:
        sha = _git(cwd, "rev-parse", "HEAD").strip()
        dirty = _git(cwd, "status", "--porcelain", "--untracked-files=no").strip()
        return sha, "true" if dirty else "false"
    except (OSError, subprocess.SubprocessError):
        env = os.environ.get("GRASPLAB_GIT_SHA", "")
        if not env or env == UNKNOWN:
            return UNKNOWN, UNKNOWN
        return env.removesuffix("-dirty"), "true" if env.endswith("-dirty") else UNKNOWN


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
    ).stdout


def torch_facts(device: str = "cpu") -> dict[str, str]:
    """Torch's CUDA and cuDNN versions, the device's name and the default dtype."""
    try:
        import torch
    except ImportError:
        return {k: UNKNOWN for k in ("cuda", "cudnn", "device", "device_name", "dtype", "threads")}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    return {
        "cuda": str(torch.version.cuda or "none"),
        "cudnn": str(cudnn or "none"),
        "device": "cuda" if on_gpu else "cpu",
        "device_name": torch.cuda.get_device_name(0) if on_gpu else cpu_model(),
        "dtype": str(torch.get_default_dtype()).removeprefix("torch."),
        "threads": str(torch.get_num_threads()),
    }


def planning_device(cluster: Mapping[str, Any]) -> str:
    """``cuda`` when a sweep's ``cluster`` config gives its workers GPUs (and not ``cpu``)."""
    gpus = float(cluster.get("gpus_per_worker") or 0)
    return "cuda" if gpus > 0 and cluster.get("device") != "cpu" else "cpu"


def fingerprint(device: str = "cpu", threads: int | None = None) -> dict[str, str]:
    """The runtime fingerprint of this process, planning on ``device``.

    Args:
        device: The planning device kind (``cpu`` or ``cuda``; the workers', not the driver's).
        threads: Torch threads per planning process, when it differs from this process's.

    Returns:
        Plain strings by key: ``python``, ``torch``, ``cuda``, ``cudnn``, ``device``,
        ``device_name``, ``dtype``, ``ray``, ``mlflow``, ``optuna``, ``numpy``, ``platform``,
        ``cpu``, ``threads``, ``git_sha``, ``git_dirty``.
    """
    facts = torch_facts(device)
    if threads is not None:
        facts["threads"] = str(threads)
    sha, dirty = git_state()
    return {
        "python": platform.python_version(),
        **{lib: version(lib) for lib in LIBRARIES},
        **facts,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "git_sha": sha,
        "git_dirty": dirty,
    }


def tags(fp: Mapping[str, str]) -> dict[str, str]:
    """The fingerprint as MLflow tags (``fingerprint.<key>``)."""
    return {f"{PREFIX}{k}": str(v) for k, v in fp.items()}


def to_json(fp: Mapping[str, str]) -> str:
    """The ``fingerprint.json`` artifact's text."""
    return json.dumps(dict(fp), indent=2, sort_keys=True) + "\n"


def of_run(run: Any) -> dict[str, str]:
    """The fingerprint recorded on an MLflow run (its ``fingerprint.*`` tags; empty if none)."""
    found = run.data.tags
    return {k.removeprefix(PREFIX): v for k, v in found.items() if k.startswith(PREFIX)}


def header_lines(fp: Mapping[str, str]) -> list[str]:
    """Two compact lines for a summary's header: the machine, then the software."""
    if not fp:
        return ["runtime: not recorded"]
    sha = fp.get("git_sha", UNKNOWN)
    dirty = {"true": " (dirty)", "false": ""}.get(fp.get("git_dirty", ""), " (dirty: unknown)")
    return [
        f"runtime: {fp.get('device', '?')} ({fp.get('device_name', '?')}), "
        f"{fp.get('dtype', '?')}, {fp.get('threads', '?')} torch threads; "
        f"{fp.get('platform', '?')}; git {sha[:12]}{dirty}",
        f"software: python {fp.get('python', '?')}, torch {fp.get('torch', '?')} "
        f"(CUDA {fp.get('cuda', '?')}, cuDNN {fp.get('cudnn', '?')}), ray {fp.get('ray', '?')}, "
        f"mlflow {fp.get('mlflow', '?')}, optuna {fp.get('optuna', '?')}, "
        f"numpy {fp.get('numpy', '?')}",
    ]


def differing(fps: Sequence[Mapping[str, str]]) -> list[str]:
    """Keys whose values differ between fingerprints (a key missing from one counts)."""
    keys = sorted({k for fp in fps for k in fp} - set(COMPARED_IGNORED))
    return [k for k in keys if len({fp.get(k) for fp in fps}) > 1]
