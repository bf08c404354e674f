"""``grasplab train world_model=<mlp|pixel|patch> env=<name> [overrides]``: a world model, tracked.

Hydra composes ``tune_configs/train/config.yaml`` on the driver (``tune_configs/`` is on its
search path, so ``env=`` and ``cluster=`` are the sweep's groups). Then, in order:

1. everything is validated (env, data, training and model settings, a resumable state that
   belongs to another training) before anything is written: a bad override is one line on
   stderr and exit code 2;
2. the MLflow store and experiment are created (embedded default: ``sqlite:///<root>/mlflow.db``
   with artifacts in ``<root>/mlartifacts``; ``mlflow.tracking_uri=http://...``: a server);
3. the dataset is collected when ``data.dir`` holds no complete one (resumable);
4. ONE MLflow run per training, keyed by its settings: rerunning the same command reopens the
   same run and :func:`grasplab.world_models.training.train` continues from ``<out>/train_state``.
   The run gets every setting as params (plus the git SHA), the train/validation metrics at
   every evaluation (history), the checkpoint (``config.json`` + ``weights.safetensors``) as
   artifacts under ``checkpoint/``, and ends FINISHED, FAILED (an exception) or KILLED (Ctrl-C);
5. the checkpoint is registered in MLflow's model registry as a version of
   ``grasplab-<env>[-<layout>]-<kind>``: ``create_model_version(source=<run artifact URI of
   checkpoint/>, run_id=...)``, a plain artifact folder (no MLmodel file), which
   ``mlflow.artifacts.download_artifacts("models:/<name>/<version>")`` gives back as a folder
   that :func:`grasplab.world_models.checkpoint.load` accepts. A version whose weights already
   are registered (same SHA-256) is reused, not duplicated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from grasplab.moved import moved_names
from grasplab.platform.config import TRAIN_CONFIG, ConfigError, compose, one_line

KINDS = ("mlp", "pixel", "patch")
RUN_KEY = "grasplab.train_key"
MODEL_URI = "grasplab.model_uri"
WEIGHTS_SHA = "weights_sha256"
ARTIFACT_PATH = "checkpoint"
SUMMARY_METRICS = ("best_val", "best_step", "steps_done", "seconds")


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSettings:
    """The ``data:`` section: where the dataset is and how to collect it when missing.

    Attributes:
        dir: Dataset directory (absolute).
        episodes: Episodes to collect.
        steps: Env steps per episode (a multiple of ``action_block``).
        seed: Collection seed.
        action_block: Frame-skip recorded in the dataset.
        shard_episodes: Episodes per shard file.
    """

    dir: Path
    episodes: int
    steps: int
    seed: int
    action_block: int
    shard_episodes: int

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], default_dir: Path) -> DataSettings:
        """Parse and check (counts >= 1, seed >= 0, ``steps`` a multiple of ``action_block``)."""
        names = [n for n in cls.__dataclass_fields__ if n != "dir"]
        unknown = sorted(set(values) - {"dir", *names})
        if unknown:
            raise ConfigError(f"data: unknown key(s) {unknown}")
        for name in names:
            value, low = values.get(name), 0 if name == "seed" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"data.{name} must be an int >= {low}, got {value!r}")
        if values["steps"] % values["action_block"]:
            raise ConfigError(
                f"data.steps={values['steps']} must be a multiple of "
                f"data.action_block={values['action_block']}"
            )
        folder = Path(values["dir"]).expanduser().resolve() if values.get("dir") else default_dir
        return cls(folder, *(int(values[n]) for n in names))


@dataclass(frozen=True)
class TrainSpec:
    """A validated ``grasplab train`` invocation.

    Attributes:
        kind: ``mlp``, ``pixel`` or ``patch``.
        env: Environment name.
        env_overrides: Environment config overrides (``layout``...).
        seed: Seed of the initialisation and the batch sampler.
        root: Folder of the default data/runs dirs and of the embedded MLflow store.
        data: Dataset settings.
        out: Checkpoint directory (absolute; ``train_state/`` inside).
        resume: Continue from ``out/train_state``.
        progress: Show progress bars.
        options: ``TrainConfig`` (``PatchTrainConfig`` for ``patch``) fields other than
            ``kind``, ``seed`` and ``model``.
        model: Model config overrides (``None`` values dropped: the training's defaults).
        mlflow: The ``mlflow:`` section.
        raw: The composed plain dict.
    """

    kind: str
    env: str
    env_overrides: dict[str, Any]
    seed: int
    root: Path
    data: DataSettings
    out: Path
    resume: bool
    progress: bool
    options: dict[str, Any]
    model: dict[str, Any]
    mlflow: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @property
    def tag(self) -> str:
        """``<env>`` or ``<env>-<layout>``: names the default dirs and the registered model."""
        return env_tag(self.env, self.env_overrides)

    @property
    def model_name(self) -> str:
        """The registered model's name."""
        return str(self.mlflow.get("model_name") or f"grasplab-{self.tag}-{self.kind}")

    def train_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`grasplab.world_models.training.train` (no ``log``)."""
        return {
            "kind": self.kind,
            "data_dir": self.data.dir,
            "out_dir": self.out,
            "seed": self.seed,
            "resume": self.resume,
            "progress": self.progress,
            "model": dict(self.model),
            **self.options,
        }

    def params(self) -> dict[str, Any]:
        """Every setting as flat MLflow params (``train.*``, ``model.*``, ``data.*``, ``env.*``)."""
        data = {k: str(v) if isinstance(v, Path) else v for k, v in vars(self.data).items()}
        return {
            "world_model.kind": self.kind,
            "seed": self.seed,
            **flatten({"env": {"name": self.env, "overrides": self.env_overrides}}),
            **flatten({"train": {**self.options, "out": str(self.out), "resume": self.resume}}),
            **flatten({"model": self.raw.get("model") or {}}),
            **flatten({"data": data}),
            "registered_model": self.model_name,
        }


def env_tag(env: str, overrides: Mapping[str, Any]) -> str:
    """``<env>`` or ``<env>-<layout>`` (``sim:pusht`` -> ``sim-pusht``: a file and model name)."""
    layout = overrides.get("layout")
    env = env.replace(":", "-")
    return f"{env}-{layout}" if layout else env


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def parse(cfg: Mapping[str, Any], cwd: Path) -> TrainSpec:
    """Validate a composed config into a :class:`TrainSpec` (nothing is written).

    Raises:
        ConfigError: Naming the first problem found.
    """
    kind = (cfg.get("world_model") or {}).get("kind")
    if kind not in KINDS:
        raise ConfigError(f"world_model: choose one of {list(KINDS)} to train, got {kind!r}")
    if not isinstance(cfg.get("seed"), int) or cfg["seed"] < 0:
        raise ConfigError(f"seed must be an int >= 0, got {cfg.get('seed')!r}")
    env_cfg = cfg.get("env") or {}
    name, overrides = str(env_cfg.get("name")), dict(env_cfg.get("overrides") or {})
    env = check_env(name, overrides)
    root = Path(cfg["root"]).expanduser().resolve() if cfg.get("root") else cwd.resolve()
    tag = env_tag(name, overrides)
    data_cfg = cfg.get("data") or {}
    block = data_cfg.get("action_block")
    data = DataSettings.from_dict(data_cfg, root / "data" / f"{tag}-b{block}")
    train_cfg = dict(cfg.get("train") or {})
    out = train_cfg.pop("out", None)
    flags = {k: bool(train_cfg.pop(k, True)) for k in ("resume", "progress")}
    model = {k: v for k, v in (cfg.get("model") or {}).items() if v is not None}
    spec = TrainSpec(
        kind=kind,
        env=name,
        env_overrides=overrides,
        seed=int(cfg["seed"]),
        root=root,
        data=data,
        out=Path(out).expanduser().resolve() if out else root / "runs" / f"{tag}-{kind}",
        resume=flags["resume"],
        progress=flags["progress"],
        options=train_cfg,
        model=model,
        mlflow=dict(cfg.get("mlflow") or {}),
        raw=dict(cfg),
    )
    check_training(spec, env)
    check_resumable(spec)
    return spec


def load(overrides: Sequence[str], cwd: Path) -> TrainSpec:
    """Compose ``tune_configs/train/config.yaml`` and validate it in one step."""
    return parse(compose(overrides, TRAIN_CONFIG), cwd)


def set_threads(spec: TrainSpec) -> None:
    """Apply ``threads`` (torch CPU threads; 1 by default, see tune_configs/train/config.yaml).

    Raises:
        ConfigError: Not an int >= 1.
    """
    import torch

    threads = spec.raw.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads must be an int >= 1, got {threads!r}")
    torch.set_num_threads(threads)


def check_env(name: str, overrides: Mapping[str, Any]) -> Any:
    """The environment (its sizes validate the model config).

    Raises:
        ConfigError: Unknown environment, field or value.
    """
    from grasplab.envs import is_sim, make, make_sim, sim_name

    try:
        if not is_sim(name):
            return make(name, **overrides)
        sim = make_sim(sim_name(name), **overrides)  # a real simulator: its sizes, then close
        try:
            sizes = ("state_dim", "action_dim", "image_size")
            return SimpleNamespace(**{k: int(getattr(sim, k)) for k in sizes})
        finally:
            sim.close()
    except (ValueError, TypeError, ImportError) as error:
        raise ConfigError(f"env: {one_line(error)}") from error


def train_config(spec: TrainSpec) -> Any:
    """The kind's training config as training will build it.

    ``TrainConfig``, or for ``patch`` ``PatchTrainConfig``.

    Raises:
        ValueError, TypeError: An unknown or invalid setting.
    """
    from grasplab.world_models.training import PatchTrainConfig, TrainConfig

    if spec.kind == "patch":
        return PatchTrainConfig(seed=spec.seed, model=spec.model, **spec.options)
    return TrainConfig(kind=spec.kind, seed=spec.seed, model=spec.model, **spec.options)


def run_identity(spec: TrainSpec) -> dict[str, Any]:
    """The settings a resumed training must share with the ``train_state`` it continues."""
    from grasplab.world_models.training import patch, state_pixel

    kind = patch if spec.kind == "patch" else state_pixel
    return kind.run_identity(train_config(spec))


def model_config_class(kind: str) -> type:
    """The model config dataclass of a kind (``MLPConfig``, ``PixelConfig``, ``PatchConfig``)."""
    from grasplab.world_models.mlp import MLPConfig
    from grasplab.world_models.patch import PatchConfig
    from grasplab.world_models.pixel import PixelConfig

    return {"mlp": MLPConfig, "pixel": PixelConfig, "patch": PatchConfig}[kind]


def check_training(spec: TrainSpec, env: Any) -> None:
    """Build the training config and the model config as training will (sizes from ``env``).

    Raises:
        ConfigError: Unknown or invalid training or model setting.
    """
    block = spec.options.get("action_block") or spec.data.action_block
    try:
        cfg = train_config(spec)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"train: {one_line(error)}") from error
    if cfg.window * block > spec.data.steps:
        raise ConfigError(
            f"train.window x action_block = {cfg.window} x {block} exceeds "
            f"data.steps={spec.data.steps}"
        )
    sizes: dict[str, Any] = {"env_action_dim": int(env.action_dim), "action_block": int(block)}
    if spec.kind == "mlp":
        sizes["state_dim"] = int(env.state_dim)
    else:
        sizes["image_size"] = int(env.image_size)
    try:
        model_config_class(spec.kind)(**{**spec.model, **sizes})
    except (ValueError, TypeError) as error:
        raise ConfigError(f"model: {one_line(error)}") from error


def check_resumable(spec: TrainSpec) -> None:
    """Refuse to resume a ``train_state`` that another training (other settings) wrote.

    Raises:
        ConfigError: Naming the differing settings.
    """
    from grasplab.world_models.training import STATE_DIR

    path = spec.out / STATE_DIR / "state.json"
    if not spec.resume or not path.is_file():
        return
    saved = json.loads(path.read_text()).get("progress", {}).get("config") or {}
    wanted = run_identity(spec)
    diff = sorted(k for k in {*saved, *wanted} if saved.get(k) != wanted.get(k))
    if diff:
        raise ConfigError(
            f"train.out {str(spec.out)!r} holds a training with other settings (differs in "
            f"{diff}); choose another train.out, or train.resume=false to start over"
        )


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def complete_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a complete dataset in ``folder``, else None (missing or unfinished)."""
    from grasplab.world_models.data import DatasetError, read_manifest

    if not (folder / "manifest.json").is_file():
        return None
    try:
        manifest = read_manifest(folder)
    except DatasetError as error:
        raise ConfigError(f"data.dir: {one_line(error)}") from error
    return manifest if manifest.get("complete") else None


def ensure_dataset(spec: TrainSpec) -> dict[str, Any]:
    """The dataset's manifest, collecting (or finishing) it first when needed.

    Raises:
        ConfigError: ``data.dir`` holds another collection or another env's data, or episodes
            too short for the training windows.
    """
    from grasplab.world_models.data import DatasetError, collect

    manifest = complete_manifest(spec.data.dir)
    if manifest is None:
        d = spec.data
        try:
            manifest = collect(
                spec.env,
                d.episodes,
                d.steps,
                d.seed,
                d.dir,
                action_block=d.action_block,
                shard_episodes=d.shard_episodes,
                progress=spec.progress,
                **spec.env_overrides,
            )
        except DatasetError as error:
            raise ConfigError(f"data.dir: {one_line(error)}") from error
    check_dataset(spec, manifest)
    return manifest


def check_dataset(spec: TrainSpec, manifest: Mapping[str, Any]) -> None:
    """The dataset must be of the configured env and long enough for the windows.

    Raises:
        ConfigError: Naming the mismatch.
    """
    found = (manifest.get("env"), manifest.get("env_overrides") or {})
    if found != (spec.env, spec.env_overrides):
        raise ConfigError(
            f"data.dir {str(spec.data.dir)!r} holds {found[0]} {found[1]} data, not "
            f"{spec.env} {spec.env_overrides}"
        )
    block = spec.options.get("action_block") or manifest["action_block"]
    window = spec.options.get("window", 5)
    if window * block > manifest["steps"]:
        raise ConfigError(
            f"train.window={window} x action_block={block} exceeds the dataset's "
            f"{manifest['steps']} steps per episode"
        )


def dataset_params(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What the training actually read, as ``dataset.*`` params."""
    keys = ("episodes", "steps", "seed", "action_block", "bytes", "state_dim", "action_dim")
    return {f"dataset.{k}": manifest.get(k) for k in keys}


# --------------------------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------------------------


def tracking_of(spec: TrainSpec) -> tuple[str, str | None]:
    """``(tracking_uri, artifact_root)``: the configured server or the embedded default."""
    from grasplab.platform.tracking import default_tracking

    uri = spec.mlflow.get("tracking_uri")
    return (str(uri), None) if uri else default_tracking(spec.root)


def run_key(params: Mapping[str, Any]) -> str:
    """The key of a training's run: a hash of all its params (git SHA included)."""
    text = json.dumps(dict(params), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def open_run(tracker: Any, spec: TrainSpec, params: Mapping[str, Any]) -> str:
    """The training's run: the one with the same key (reopened: a resume), else a new one."""
    from grasplab.platform.tracking import ROLE

    key = run_key(params)
    found = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`{RUN_KEY}` = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if found:
        run_id = found[0].info.run_id
        tracker.client.update_run(run_id, status="RUNNING")
    else:
        tags = {RUN_KEY: key, ROLE: "train", "kind": spec.kind, "env": spec.tag}
        run = tracker.client.create_run(
            tracker.experiment_id, run_name=f"train-{spec.tag}-{spec.kind}", tags=tags
        )
        run_id = run.info.run_id
        tracker.log_params(run_id, params)
    tracker.open_runs.add(run_id)
    return run_id


def metric_name(key: str) -> str:
    """MLflow name of a training record's key: ``val_*`` and ``lr`` kept, others ``train_*``."""
    return key if key.startswith("val_") or key == "lr" else f"train_{key}"


def metric_logger(tracker: Any, run_id: str) -> Callable[[dict[str, float], int], None]:
    """The ``log(metrics, step)`` callback of the training: one MLflow point per metric."""

    def log(metrics: dict[str, float], step: int) -> None:
        values = {metric_name(k): v for k, v in metrics.items() if k != "step"}
        tracker.log_metrics(run_id, values, step=step)

    return log


def log_checkpoint(tracker: Any, run_id: str, out: Path) -> str:
    """Log the checkpoint's files under ``checkpoint/``; returns that folder's artifact URI."""
    from grasplab.world_models import checkpoint

    for name in (checkpoint.CONFIG_FILE, checkpoint.WEIGHTS_FILE):
        tracker.client.log_artifact(run_id, str(out / name), ARTIFACT_PATH)
    artifact_uri = tracker.client.get_run(run_id).info.artifact_uri
    return f"{artifact_uri.rstrip('/')}/{ARTIFACT_PATH}"


def register(client: Any, name: str, source: str, run_id: str, tags: Mapping[str, str]) -> str:
    """Register ``source`` as a version of ``name`` (created if missing); returns its URI.

    A version with the same weights (``weights_sha256`` tag) is reused instead.
    """
    from mlflow.exceptions import MlflowException

    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        try:
            client.create_registered_model(name, description="grasplab world model")
        except MlflowException as error:  # created meanwhile by another training
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    for version in client.search_model_versions(filter_string=f"name = '{name}'"):
        if version.tags.get(WEIGHTS_SHA) == tags[WEIGHTS_SHA]:
            return f"models:/{name}/{version.version}"
    version = client.create_model_version(name, source, run_id=run_id, tags=dict(tags))
    return f"models:/{name}/{version.version}"


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a finished ``grasplab train`` returns (and prints).

    Attributes:
        run_id: The MLflow run.
        checkpoint: The checkpoint directory.
        model_uri: ``models:/<name>/<version>``, or None when not registered.
        summary: The training's summary (``best_val``, ``steps_done``, ``stopped``...).
        tracking_uri: The MLflow store.
        ui: Command that opens the MLflow UI.
    """

    run_id: str
    checkpoint: Path
    model_uri: str | None
    summary: dict[str, Any]
    tracking_uri: str
    ui: str
    fingerprint: dict[str, str] = field(default_factory=dict)


def open_tracker(spec: TrainSpec) -> Any:
    """The MLflow client with the store and experiment created (before anything else runs).

    Raises:
        ConfigError: The configured MLflow server does not answer.
    """
    from grasplab.platform.sweep import check_tracking
    from grasplab.platform.tracking import Tracker

    uri, artifacts = tracking_of(spec)
    check_tracking(uri)
    return Tracker(uri, spec.mlflow.get("experiment") or "grasplab-train", artifacts)


def run_training(spec: TrainSpec, tracker: Any, manifest: Mapping[str, Any]) -> TrainResult:
    """Train in the training's run; the run ends FINISHED, FAILED or KILLED on any exit."""
    from grasplab.platform import fingerprint
    from grasplab.platform.tracking import git_sha, ui_command
    from grasplab.world_models import training

    params = {**spec.params(), **dataset_params(manifest), "git_sha": git_sha()}
    run_id = open_run(tracker, spec, params)
    fp = fingerprint.fingerprint("cpu")  # training runs on the CPU
    tracker.set_tags(run_id, fingerprint.tags(fp))
    tracker.log_text(run_id, fingerprint.to_json(fp), fingerprint.ARTIFACT)
    status = "FAILED"
    try:
        log = metric_logger(tracker, run_id)
        summary = training.train(log=log, **spec.train_kwargs())
        model_uri = finish(spec, tracker, run_id, summary)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end(run_id, status)
    return TrainResult(
        run_id,
        spec.out,
        model_uri,
        summary,
        tracker.tracking_uri,
        ui_command(tracker.tracking_uri, tracking_of(spec)[1]),
        fp,
    )


def finish(spec: TrainSpec, tracker: Any, run_id: str, summary: Mapping[str, Any]) -> str | None:
    """Log the summary and the checkpoint; register it unless the time budget cut training."""
    from grasplab.world_models import checkpoint

    step = int(summary["steps_done"])
    tracker.log_metrics(run_id, {k: summary[k] for k in SUMMARY_METRICS}, step=step)
    record = checkpoint.read_config(spec.out)
    tracker.log_params(run_id, flatten({"model_config": record["config"]}))
    source = log_checkpoint(tracker, run_id, spec.out)
    tracker.set_tags(run_id, {"stopped": summary["stopped"], "checkpoint": str(spec.out)})
    if not spec.mlflow.get("register", True) or summary["stopped"] == "time_limit":
        return None
    tags = {
        WEIGHTS_SHA: record["weights"]["sha256"],
        "kind": spec.kind,
        "env": spec.tag,
        "steps_done": str(step),
        "best_val": f"{summary['best_val']:.6g}",
    }
    model_uri = register(tracker.client, spec.model_name, source, run_id, tags)
    tracker.set_tags(run_id, {MODEL_URI: model_uri})
    return model_uri


def report(result: TrainResult) -> str:
    """The final lines: runtime fingerprint, checkpoint, registered model URI, MLflow UI."""
    from grasplab.platform import fingerprint

    s = result.summary
    lines = [
        *fingerprint.header_lines(result.fingerprint),
        f"checkpoint: {result.checkpoint} (best val_loss {s['best_val']:.5g} at step "
        f"{s['best_step']}, {s['steps_done']} steps, stopped: {s['stopped']})",
    ]
    if result.model_uri:
        lines.append(f"model: {result.model_uri}")
    elif s["stopped"] == "time_limit":
        lines.append("model: not registered (time budget reached); rerun to continue")
    lines.append(f"MLflow run {result.run_id}; UI: {result.ui}")
    return "\n".join(lines)


__getattr__ = moved_names(
    __name__,
    {
        "main": "grasplab.cli.train.main",
        "parse_args": "grasplab.cli.train.parser",
        "job_overrides": "grasplab.cli.jobs.job_overrides",
    },
)
