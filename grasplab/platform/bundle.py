"""Result bundles: ``grasplab export`` writes one from a sweep, ``grasplab verify`` checks it.

A bundle is a folder anyone can re-score and partly re-run:

- ``manifest.json``: format version, the protocol (with its version and fingerprint) at every
  horizon, the task set's identity, the world-model spec and the SHA-256 of its checkpoint files,
  per variant the planner, its chosen config and the table figures (success rate, n, Wilson 95%
  CI, mean final distance and model steps, median time-to-success), the random floor's figures,
  the paired p-values as the sweep computed them, the command line, the runtime fingerprint and
  the planner seed of the test evaluation;
- ``episodes/<variant key>.jsonl`` and ``episodes/random_floor-H<h>.jsonl``: one JSON row per
  test episode (NaN written as ``null``). A variant's rows are the exact records the sweep
  logged (``test/<key>.outcome.json`` on the parent run); the floor's are recomputed by
  :func:`grasplab.eval.random_floor` (seeded, from the protocol alone), and the manifest keeps
  the floor figures the sweep logged, so :func:`verify` checks that they agree;
- ``model/``: the world model's checkpoint files, when the spec names files (a checkpoint
  folder or a ``models:/`` URI) of at most :data:`MAX_BUNDLED_MODEL` bytes;
- ``SHA256SUMS``: the SHA-256 of every other file (``sha256sum -c`` reads it).

:func:`verify` refuses a bundle whose hashes do not match, recomputes every figure, CI and
p-value from the rows with the project's statistics (:mod:`grasplab.eval.metrics`,
:mod:`grasplab.eval.significance`) and names those that differ from the manifest; with
``rerun`` it re-plans sampled test episodes with :func:`grasplab.eval.evaluate` and counts
those that reproduce bit-identically (deterministic fields) and those that agree on success.
Exit codes of the commands: 0 clean; 1 a figure differs, or a rerun on the bundle's device type
and dtype did not reproduce; 2 bad input (one line).

A study (``grasplab ablate``) exports to one sub-bundle per nested sweep (``<cell>-s<seed>/``),
listed in a top-level manifest with the study's fingerprint, under one ``SHA256SUMS``; its
pooled ablation table is not re-derived (each sweep's figures are).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import random
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grasplab.eval.results import EpisodeResults

FORMAT = 1
"""Bundle format version this code writes and reads (a newer one is refused)."""
SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
EPISODES = "episodes"
PLANNER_SEED = 0
"""The planner seed of the sweep's test evaluation.

Workers call :func:`grasplab.eval.evaluate` without ``seed=`` (:mod:`grasplab.platform.workers`),
so the test episodes are planned with evaluate's default seed, recorded here and passed
explicitly by a rerun: with per-episode random streams, keyed by (protocol seed, split, episode
index, planner seed), an episode's plan does not depend on the chunk it was planned in.
"""
DETERMINISTIC = EpisodeResults.DETERMINISTIC
"""Per-episode fields a rerun on the same device type and dtype must reproduce bit for bit
(those a row holds); wall-clock fields never are."""
FIGURES = (
    "n",
    "success_rate",
    "ci_low",
    "ci_high",
    "median_time_to_success",
    "median_steps_to_success",
    "final_distance",
    "model_steps",
)
"""Table figures of a result set, recomputed by :func:`verify` from its rows."""
P_VALUES = ("p_success", "p_success_adj", "p_tts", "p_tts_adj")
MODEL_DIR = "model"
"""Where a bundle holds the world model's checkpoint files (when they were small enough)."""
MAX_BUNDLED_MODEL = 256 * 2**20
"""Checkpoints up to this many bytes travel in the bundle; larger ones are hashed only."""


class BundleError(ValueError):
    """Bad input: unknown or running sweep, missing or broken bundle (one line, exit 2)."""


# --- export ------------------------------------------------------------------------------------


def resolve_sweep(client: Any, ref: str) -> Any:
    """The FINISHED parent run of ``ref`` (sweep name, sweep id or parent run id).

    Raises:
        BundleError: Unknown (naming the nearest sweep in the store) or not finished.
    """
    from grasplab.platform.report import document as reporting
    from grasplab.platform.tracking import ROLE

    try:
        run = reporting.resolve(client, ref)
    except reporting.ReportError as error:
        names = known_sweeps(client)
        near = difflib.get_close_matches(ref, names, n=1, cutoff=0.0)
        hint = f"; nearest: {near[0]!r}" if near else "; the store holds no sweep"
        raise BundleError(f"{error}{hint}") from error
    if run.info.status != "FINISHED" or run.data.tags.get(ROLE) != "sweep":
        raise BundleError(
            f"sweep {reporting.sweep_id_of(run)} is {run.info.status}, not FINISHED: export it "
            "when it has finished"
        )
    return run


def known_sweeps(client: Any) -> list[str]:
    """Sweep ids and names of every parent run in the store."""
    from grasplab.platform.tracking import ROLE, SWEEP_ID

    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, f"tags.`{ROLE}` = 'sweep'", max_results=1000)
    names = [r.data.tags.get(SWEEP_ID, r.info.run_name) for r in runs]
    names += [r.data.params.get("sweep_name", "") for r in runs]
    return sorted({n for n in names if n})


def parse_param(text: str) -> Any:
    """A param's value from its MLflow text (JSON, else ``True``/``False``/``None``, else text)."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return {"True": True, "False": False, "None": None}.get(text, text)


def protocol_of_run(run: Any) -> dict[str, Any]:
    """The parent run's protocol as a dict :meth:`EvalProtocol.from_dict` takes.

    Raises:
        BundleError: It does not rebuild to the recorded fingerprint.
    """
    from grasplab.eval import EvalProtocol

    params = run.data.params
    values = {
        k.removeprefix("protocol."): parse_param(v)
        for k, v in params.items()
        if k.startswith("protocol.") and k != "protocol.fingerprint"
    }
    values["version"] = str(values.get("version", ""))
    try:
        protocol = EvalProtocol.from_dict(values)
    except ValueError as error:
        raise BundleError(f"the sweep's protocol does not rebuild here: {error}") from error
    if protocol.fingerprint() != params.get("protocol.fingerprint"):
        raise BundleError(
            f"the sweep's protocol rebuilds to fingerprint {protocol.fingerprint()}, not the "
            f"recorded {params.get('protocol.fingerprint')}"
        )
    return protocol.to_dict()


def at_horizon(protocol: Mapping[str, Any], horizon: int) -> Any:
    """The :class:`EvalProtocol` of ``protocol`` at ``horizon`` (as the sweep's stages build)."""
    from grasplab.eval import EvalProtocol

    return EvalProtocol.from_dict({**protocol, "horizon": int(horizon)})


def task_identity(protocol: Any) -> dict[str, Any]:
    """What decides the test goals, and the SHA-256 of the test starts and goals themselves."""
    identity: dict[str, Any] = {
        "env": protocol.env,
        "env_overrides": dict(protocol.env_overrides),
        "seed": protocol.seed,
        "test_episodes": protocol.test_episodes,
        "task_set": dict(protocol.task_set),
        "dataset_identity": protocol.tasks_spec.identity() if protocol.task_set else "",
    }
    if protocol.is_sim:
        identity["test_tasks_sha256"] = "not computed (simulator tasks)"
    else:
        tasks = protocol.tasks("test")
        digest = hashlib.sha256()
        for tensor in (tasks.start, tasks.goal):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        identity["test_tasks_sha256"] = digest.hexdigest()
    return identity


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path (sorted)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


def world_model_entry(spec: str, out: Path | None, tracking_uri: str | None = None) -> dict:
    """The world-model spec and, where it names files, their SHA-256 (and the combined hash).

    ``models:/`` and other MLflow URIs are downloaded through ``tracking_uri``. Files up to
    :data:`MAX_BUNDLED_MODEL` bytes in all are copied to ``out`` (the bundle's ``model/``), so
    that a rerun needs neither the sweep's file system nor its MLflow store.
    """
    from grasplab.platform.config import MODEL_URI_SCHEMES

    entry: dict[str, Any] = {"spec": spec, "files": {}, "sha256": "", "bundled": ""}
    with tempfile.TemporaryDirectory() as tmp:
        folder: Path | None = None
        if spec.startswith(MODEL_URI_SCHEMES):
            import mlflow

            if tracking_uri:
                mlflow.set_tracking_uri(tracking_uri)
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=spec, dst_path=tmp))
        elif Path(spec).is_dir():
            folder = Path(spec)
        if folder is None:
            return entry
        entry["files"] = folder_hashes(folder)
        entry["sha256"] = combined(entry["files"])
        size = sum((folder / name).stat().st_size for name in entry["files"])
        if out is not None and size <= MAX_BUNDLED_MODEL:
            shutil.copytree(folder, out)
            entry["bundled"] = out.name
    return entry


def combined(files: Mapping[str, str]) -> str:
    """One SHA-256 over ``path  hash`` lines (a checkpoint folder's identity)."""
    text = "".join(f"{h}  {p}\n" for p, h in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """JSON lines, one per episode, NaN as ``null``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({k: _json_value(v) for k, v in r.items()}) for r in rows]
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of :func:`write_rows` (``null`` back to NaN)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append({k: math.nan if v is None else v for k, v in json.loads(line).items()})
    return rows


def load_outcome(client: Any, run: Any, key: str) -> dict[str, Any]:
    """The stage outcome the sweep logged (``test/<key>.outcome.json``).

    Raises:
        BundleError: The sweep predates it (run by an older grasplab).
    """
    from grasplab.platform.report.readback import outcome_artifact, read_outcome

    logged = read_outcome(client, run.info.run_id, key)
    if logged is None:
        raise BundleError(
            f"sweep run {run.info.run_id} has no {outcome_artifact(key)} (made by an older "
            "grasplab?): rerun the sweep to export it"
        )
    return logged


def logged_p_values(run: Any, keys: Sequence[str]) -> list[dict[str, Any]]:
    """The pairwise p-values the sweep logged on its parent (``p_success/<a>_vs_<b>``, ...)."""
    metrics, out = run.data.metrics, []
    for a in keys:
        for b in keys:
            pair = f"{a}_vs_{b}"
            if a == b or f"success_diff/{pair}" not in metrics:
                continue
            row: dict[str, Any] = {"a": a, "b": b}
            for name, metric in zip(
                P_VALUES, ("p_success", "p_success_holm", "p_tts", "p_tts_holm"), strict=True
            ):
                row[name] = metrics.get(f"{metric}/{pair}", math.nan)
            out.append(row)
    return out


def build_manifest(
    client: Any, run: Any, tracking_uri: str | None, model_dir: Path | None = None
) -> tuple[dict, dict]:
    """The manifest of a finished sweep and its per-episode rows by file name.

    A world model's checkpoint files are copied to ``model_dir`` when small enough.
    """
    from grasplab.eval import random_floor
    from grasplab.platform import fingerprint
    from grasplab.platform.report.readback import load_sweep, sweep_id_of
    from grasplab.platform.sweep import COMMAND

    protocol = protocol_of_run(run)
    sweep = load_sweep(client, run)
    variants, rows = [], {}
    for e in sweep.entries:
        outcome = load_outcome(client, run, e.key)
        rows[f"{e.key}.jsonl"] = outcome["test_records"]
        variants.append(
            {
                "key": e.key,
                "label": outcome["label"],
                "planner": outcome["planner"],
                "horizon": int(outcome["horizon"]),
                "config": outcome["best_config"],
                "tuned": outcome["tuned"],
                "figures": {k: _json_value(e.test.get(k, math.nan)) for k in FIGURES},
                "rows": f"{EPISODES}/{e.key}.jsonl",
            }
        )
    floors = []
    for horizon, figures in sorted(sweep.floors.items()):
        name = f"random_floor-H{horizon}.jsonl"
        rows[name] = random_floor(at_horizon(protocol, horizon), "test").to_records()
        floors.append(
            {
                "horizon": horizon,
                "figures": {k: _json_value(figures.get(k, math.nan)) for k in FIGURES},
                "rows": f"{EPISODES}/{name}",
            }
        )
    first = at_horizon(protocol, variants[0]["horizon"] if variants else protocol["horizon"])
    params = run.data.params
    manifest = {
        "format": FORMAT,
        "sweep": {
            "id": sweep_id_of(run),
            "name": params.get("sweep_name", ""),
            "run_id": run.info.run_id,
            "recipe": params.get("recipe", ""),
            "command": run.data.tags.get(COMMAND, ""),
            "chunk_size": parse_param(params.get("chunk_size", "null")),
        },
        "protocol": {
            **protocol,
            "fingerprint": params.get("protocol.fingerprint"),
            "horizons": sorted({v["horizon"] for v in variants}),
        },
        "task_set": task_identity(first),
        "world_model": world_model_entry(params.get("world_model", ""), model_dir, tracking_uri),
        "planner_seed": PLANNER_SEED,
        "variants": variants,
        "random_floor": floors,
        "comparisons": [
            {k: _json_value(v) for k, v in c.items()}
            for c in logged_p_values(run, [v["key"] for v in variants])
        ],
        "fingerprint": fingerprint.of_run(run),
    }
    return manifest, rows


def export(client: Any, ref: str, out: Path, tracking_uri: str | None = None) -> Path:
    """Write the bundle of sweep or study ``ref`` to ``out`` (created; must be empty if it exists).

    A study (``grasplab ablate``) is exported as one sub-bundle per nested sweep (cell x seed),
    listed in the top-level manifest, and one ``SHA256SUMS`` over all of it.

    Raises:
        BundleError: Unknown or unfinished sweep or study, a non-empty ``out``, a sweep without
            the artifacts export needs.
    """
    from grasplab.platform.study import resolve_study

    if out.exists() and any(out.iterdir()):
        raise BundleError(f"--out {out} exists and is not empty")
    study = resolve_study(client, ref)
    run = resolve_sweep(client, ref) if study is None else None
    try:
        if study is not None:
            return export_study(client, study, out, tracking_uri)
        write_sweep(client, run, out, tracking_uri)
        write_sums(out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written bundle
        raise
    return out


def write_sweep(client: Any, run: Any, out: Path, tracking_uri: str | None) -> dict[str, Any]:
    """A sweep's manifest, rows and checkpoint files into ``out`` (no ``SHA256SUMS``)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest, rows = build_manifest(client, run, tracking_uri, out / MODEL_DIR)
    for name, records in rows.items():
        write_rows(out / EPISODES / name, records)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def export_study(client: Any, study: Any, out: Path, tracking_uri: str | None) -> Path:
    """A finished study's bundle: a sub-bundle per nested sweep and a top-level manifest."""
    from grasplab.platform import fingerprint
    from grasplab.platform.tracking import CELL, PARENT, ROLE, SEED, STUDY_ID

    name = study.data.tags.get(STUDY_ID, study.info.run_id)
    if study.info.status != "FINISHED":
        raise BundleError(f"study {name} is {study.info.status}, not FINISHED")
    sweeps = client.search_runs(
        [study.info.experiment_id],
        f"tags.`{PARENT}` = '{study.info.run_id}' and tags.`{ROLE}` = 'sweep'",
    )
    listed = []
    for run in sorted(sweeps, key=lambda r: (r.data.tags.get(CELL, ""), r.data.tags.get(SEED))):
        folder = f"{run.data.tags.get(CELL, 'cell')}-s{run.data.tags.get(SEED, '0')}"
        write_sweep(client, resolve_sweep(client, run.info.run_id), out / folder, tracking_uri)
        listed.append(
            {"dir": folder, "cell": run.data.tags.get(CELL), "seed": run.data.tags.get(SEED)}
        )
    manifest = {
        "format": FORMAT,
        "study": {
            "id": name,
            "run_id": study.info.run_id,
            "name": study.data.params.get("study_name"),
        },
        "sweeps": listed,
        "fingerprint": fingerprint.of_run(study),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    write_sums(out)
    return out


def write_sums(folder: Path) -> None:
    """``SHA256SUMS`` of every file of the bundle but itself."""
    hashes = {p: h for p, h in folder_hashes(folder).items() if p != SUMS}
    (folder / SUMS).write_text("".join(f"{h}  {p}\n" for p, h in hashes.items()))


# --- verify ------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What :func:`verify` found.

    Attributes:
        files: Files whose hashes were checked.
        checked: Figures and p-values recomputed.
        differ: One line per figure or p-value that differs from the manifest.
        rerun: Per variant: ``(sampled, bit-identical, same success)``.
        same_device: This machine has the manifest's device type, device name and dtype.
        mismatched: Per variant, the sampled episodes that did not reproduce bit for bit.
    """

    files: int = 0
    checked: int = 0
    differ: list[str] = field(default_factory=list)
    rerun: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    same_device: bool = True
    mismatched: dict[str, list[int]] = field(default_factory=dict)

    def merge(self, other: Verdict, prefix: str) -> None:
        """Fold in a sub-bundle's verdict (its keys prefixed)."""
        self.checked += other.checked
        self.differ += [f"{prefix}{line}" for line in other.differ]
        self.rerun.update({f"{prefix}{k}": v for k, v in other.rerun.items()})
        self.mismatched.update({f"{prefix}{k}": v for k, v in other.mismatched.items()})
        self.same_device = self.same_device and other.same_device

    def reproduced(self) -> bool:
        """Every sampled episode reproduced bit for bit."""
        return all(same == n for n, same, _ in self.rerun.values())

    def exit_code(self) -> int:
        """1 when a figure differs or a same-device rerun did not reproduce, else 0."""
        return int(bool(self.differ) or (self.same_device and not self.reproduced()))

    def lines(self) -> list[str]:
        """The printed report."""
        out = [f"hashes: {self.files} files match SHA256SUMS"]
        if self.differ:
            out.append(f"figures: {len(self.differ)} of {self.checked} differ from the manifest:")
            out += [f"  {line}" for line in self.differ]
        else:
            out.append(f"figures: all {self.checked} recomputed from the rows match the manifest")
        for key, (n, same, agree) in self.rerun.items():
            out.append(
                f"rerun {key}: {same}/{n} reproduce bit-identically, {agree}/{n} agree on success"
                + (f" (not: episodes {self.mismatched[key]})" if self.mismatched.get(key) else "")
            )
        if self.rerun and not self.same_device:
            out.append("rerun: another device type or dtype than the bundle's: differences allowed")
        return out


def check_hashes(folder: Path) -> int:
    """Number of files checked against ``SHA256SUMS``.

    Raises:
        BundleError: Missing folder or sums, a missing file, a hash that does not match.
    """
    if not folder.is_dir():
        raise BundleError(f"no bundle folder at {folder}")
    sums = folder / SUMS
    if not sums.is_file():
        raise BundleError(f"{folder} is not a bundle: no {SUMS}")
    expected = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if not name or name.startswith("/") or ".." in Path(name).parts:
            raise BundleError(f"{sums}: malformed line {line!r}")
        expected[name] = digest
    bad = [
        name
        for name, digest in expected.items()
        if not (folder / name).is_file() or sha256_file(folder / name) != digest
    ]
    if bad:
        raise BundleError(
            f"bundle {folder}: {len(bad)} file(s) do not match {SUMS}: {', '.join(bad[:5])}"
        )
    if MANIFEST not in expected:
        raise BundleError(f"bundle {folder}: {SUMS} does not cover {MANIFEST}")
    return len(expected)


def read_manifest(folder: Path, study: bool = False) -> dict[str, Any]:
    """The manifest, checked for format and shape (``study``: a study's manifest is accepted).

    Raises:
        BundleError: Unreadable or truncated JSON, a newer format, missing sections.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{folder / MANIFEST} is unreadable or truncated: {error}") from error
    if not isinstance(manifest, dict):
        raise BundleError(f"{folder / MANIFEST} is not a JSON object")
    version = manifest.get("format")
    if not isinstance(version, int) or version > FORMAT:
        raise BundleError(
            f"bundle format {version!r} is newer than this grasplab reads ({FORMAT}): upgrade"
        )
    sections = ("protocol", "variants", "random_floor", "world_model")
    if study and "sweeps" in manifest:
        sections = ("study", "sweeps")
    missing = [k for k in sections if k not in manifest]
    if missing:
        raise BundleError(f"{folder / MANIFEST} lacks {', '.join(missing)}")
    return manifest


def _same(a: Any, b: Any) -> bool:
    a = math.nan if a is None else a
    b = math.nan if b is None else b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return a == b


def recompute(folder: Path, manifest: Mapping[str, Any], verdict: Verdict) -> None:
    """Every figure and p-value from the rows, compared with the manifest (into ``verdict``)."""
    from grasplab.eval.significance import pairwise

    sets = [(v["key"], v) for v in manifest["variants"]]
    sets += [(f"random floor H{f['horizon']}", f) for f in manifest["random_floor"]]
    records = {}
    for key, item in sets:
        rows = read_rows(folder / item["rows"])
        records[key] = rows
        figures = EpisodeResults.from_records(rows).summary() if rows else {}
        for name, logged in item["figures"].items():
            verdict.checked += 1
            if not _same(figures.get(name), logged):
                verdict.differ.append(
                    f"{key} {name}: manifest {logged}, from the rows {figures.get(name)}"
                )
    variants = manifest["variants"]
    comparisons = pairwise(
        {v["key"]: records[v["key"]] for v in variants}, {v["key"]: v["horizon"] for v in variants}
    )
    found = {frozenset((c.a, c.b)): c for c in comparisons}
    for logged in manifest.get("comparisons", []):
        c = found.get(frozenset((logged["a"], logged["b"])))
        for name in P_VALUES:
            verdict.checked += 1
            value = getattr(c, name) if c is not None else None
            if c is None or not _same(value, logged.get(name)):
                verdict.differ.append(
                    f"{logged['a']} vs {logged['b']} {name}: manifest {logged.get(name)}, "
                    f"from the rows {value}"
                )


def same_bits(a: Any, b: Any) -> bool:
    """Equal values (NaN equals NaN; floats compared exactly)."""
    a = math.nan if a is None else a
    b = math.nan if b is None else b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def load_world_model(folder: Path, manifest: Mapping[str, Any], protocol: Any, device: str) -> Any:
    """The bundle's world model, built as a worker builds it.

    From the bundle's own copy of the checkpoint when it has one, else from the spec (a
    checkpoint folder, ``models:/`` through ``$MLFLOW_TRACKING_URI``, or an import path). A
    checkpoint must hash to the manifest's SHA-256.

    Raises:
        BundleError: It cannot be loaded, or its files are not the exported ones.
    """
    from grasplab.eval.models import load_model
    from grasplab.platform.workers import resolve_spec

    entry = manifest["world_model"]
    spec = entry.get("spec", "")
    try:
        local = str(folder / entry["bundled"]) if entry.get("bundled") else resolve_spec(spec)
        if entry.get("sha256") and Path(local).is_dir():
            found = combined(folder_hashes(Path(local)))
            if found != entry["sha256"]:
                raise BundleError(
                    f"world model {spec!r} ({local}) hashes to {found[:12]}, the bundle's to "
                    f"{entry['sha256'][:12]}: not the checkpoint the sweep used"
                )
        return load_model(local, protocol, device)
    except BundleError:
        raise
    except Exception as error:  # noqa: BLE001 - any loader failure is one line
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BundleError(f"cannot load world model {spec!r}: {first}") from error


def rerun(
    folder: Path, manifest: Mapping[str, Any], k: int, verdict: Verdict, device: str = "cpu"
) -> None:
    """Re-plan ``k`` sampled test episodes per variant; count reproductions (into ``verdict``).

    The episodes are planned as the sweep's workers planned them: the world model built from
    the spec, the variant's config, the manifest's planner seed and, on the CPU, the workers'
    torch thread count.
    """
    import torch

    from grasplab.platform import fingerprint

    here = fingerprint.torch_facts(device)
    theirs = manifest.get("fingerprint") or {}
    verdict.same_device = all(here.get(f) == theirs.get(f) for f in ("device", "dtype")) and (
        here["device"] == "cpu" or here.get("device_name") == theirs.get("device_name")
    )
    threads = torch.get_num_threads()
    if str(theirs.get("threads", "")).isdigit():
        torch.set_num_threads(int(theirs["threads"]))
    try:
        models: dict[int, Any] = {}
        for v in manifest["variants"]:
            protocol = at_horizon(manifest_protocol(manifest), v["horizon"])
            if v["horizon"] not in models:
                models[v["horizon"]] = load_world_model(folder, manifest, protocol, device)
            rerun_variant(folder, manifest, v, protocol, models[v["horizon"]], k, verdict)
    finally:
        torch.set_num_threads(threads)


def rerun_variant(
    folder: Path,
    manifest: Mapping[str, Any],
    variant: Mapping[str, Any],
    protocol: Any,
    model: Any,
    k: int,
    verdict: Verdict,
) -> None:
    """Re-plan ``k`` sampled test episodes of one variant and compare them with its rows."""
    from grasplab.eval import evaluate
    from grasplab.planners import make_planner

    key = variant["key"]
    rows = {int(r["index"]): r for r in read_rows(folder / variant["rows"])}
    sampled = sorted(random.Random(f"{key}/{k}").sample(sorted(rows), min(k, len(rows))))
    again = evaluate(
        protocol,
        make_planner(variant["planner"], variant["config"]),
        model,
        "test",
        indices=sampled,
        seed=int(manifest.get("planner_seed", PLANNER_SEED)),
    ).to_records()
    fields = [f for f in DETERMINISTIC if f in again[0] and f in rows[sampled[0]]]
    same = [all(same_bits(r[f], rows[r["index"]][f]) for f in fields) for r in again]
    agree = sum(bool(r["success"]) == bool(rows[r["index"]]["success"]) for r in again)
    verdict.rerun[key] = (len(sampled), sum(same), agree)
    verdict.mismatched[key] = [i for i, ok in zip(sampled, same, strict=True) if not ok]


def manifest_protocol(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol dict of the manifest (without the bundle's extra keys)."""
    return {k: v for k, v in manifest["protocol"].items() if k not in ("fingerprint", "horizons")}


def verify(folder: Path, rerun_k: int = 0, device: str = "cpu") -> Verdict:
    """Check a bundle: hashes, figures recomputed from its rows, and optionally a rerun.

    A study's bundle is checked sweep by sweep (keys prefixed by the sub-bundle's folder).

    Raises:
        BundleError: Missing folder, hash mismatch, truncated or newer manifest, a protocol
            that does not rebuild to its fingerprint, a world model that cannot be loaded.
    """
    verdict = Verdict(files=check_hashes(folder))
    manifest = read_manifest(folder, study=True)
    if "sweeps" in manifest:
        for item in manifest["sweeps"]:
            sub = folder / item["dir"]
            part = Verdict()
            verify_sweep(sub, read_manifest(sub), rerun_k, device, part)
            verdict.merge(part, f"{item['dir']}/")
    else:
        verify_sweep(folder, manifest, rerun_k, device, verdict)
    return verdict


def verify_sweep(
    folder: Path, manifest: Mapping[str, Any], rerun_k: int, device: str, verdict: Verdict
) -> None:
    """Figures, p-values and (``rerun_k``) reruns of one sweep's bundle, into ``verdict``."""
    try:
        protocol = at_horizon(manifest_protocol(manifest), manifest["protocol"]["horizon"])
    except (ValueError, KeyError, TypeError) as error:
        raise BundleError(f"the bundle's protocol does not rebuild here: {error}") from error
    if protocol.fingerprint() != manifest["protocol"].get("fingerprint"):
        raise BundleError(
            f"the bundle's protocol rebuilds to fingerprint {protocol.fingerprint()}, not its "
            f"recorded {manifest['protocol'].get('fingerprint')}"
        )
    recompute(folder, manifest, verdict)
    if rerun_k > 0:
        rerun(folder, manifest, rerun_k, verdict, device)


# --- commands ----------------------------------------------------------------------------------
