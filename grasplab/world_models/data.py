"""Episode datasets: resumable collection in a torch-native env and verified loading.

On disk (``out_dir``)::

    manifest.json                  sizes, seeds, env name + config, action_block, policy, shards
    shard-00000.safetensors        images (n, T+1, H, W, 3) uint8, states (n, T+1, S) float32,
    shard-00001.safetensors        actions (n, T, A_env) float32
    ...

Shard ``i`` holds episodes ``[i * shard_episodes, ...)`` and is generated from its own seed
``(seed, i)``, so a collection interrupted at any point and resumed yields exactly the data of an
uninterrupted run. Shards are written to a hidden temp name and atomically renamed; the manifest
lists a shard (with its SHA-256) only after that rename, and readers only read listed shards whose
hash matches: a half-written shard is never read as valid.

In a real simulator (``env="sim:pusht"``, see :func:`grasplab.envs.make_sim`) the same format
holds the simulator's states; starts come from its own seeded resets (``random_states``) and the
policy is the Ornstein-Uhlenbeck part alone (correlated random actions about the middle of the
action box), with no goal reaching.

A dataset's identity (:func:`dataset_identity`) is a hash of its shards' SHA-256: checkpoints
record it, and evaluation protocols whose tasks come from the dataset include it.

Behaviour policy (per episode, batched): with probability ``goal_fraction``, noisy goal reaching
(``waypoint_policy`` toward random goals, a fresh goal whenever one is reached) plus correlated
noise; otherwise Ornstein-Uhlenbeck (temporally correlated) random actions. Starts are uniform over
the free space (``env.reset``), so the two together cover the whole layout.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from grasplab.envs import is_sim
from grasplab.moved import moved_names
from grasplab.world_models.checkpoint import save_tensors_atomic, sha256_file, write_json_atomic
from grasplab.world_models.manifest import FORMAT as FORMAT
from grasplab.world_models.manifest import FORMAT_VERSION as FORMAT_VERSION
from grasplab.world_models.manifest import MANIFEST as MANIFEST
from grasplab.world_models.manifest import RECIPES as RECIPES
from grasplab.world_models.manifest import DatasetError as DatasetError
from grasplab.world_models.manifest import dataset_identity as dataset_identity
from grasplab.world_models.manifest import read_manifest as read_manifest
from grasplab.world_models.manifest import require_dataset as require_dataset


@dataclass(frozen=True)
class Policy:
    """Behaviour-policy parameters (recorded in the manifest)."""

    goal_fraction: float = 0.5
    """Fraction of episodes that reach for random goals (the rest: correlated random actions)."""
    ou_theta: float = 0.15
    """Ornstein-Uhlenbeck mean reversion per env step (correlation time ~ 1/theta steps)."""
    ou_sigma: tuple[float, float] = (0.4, 1.0)
    """Range of the random episodes' stationary noise std, drawn per episode."""
    goal_noise: tuple[float, float] = (0.1, 0.5)
    """Range of the goal-reaching episodes' stationary noise std, drawn per episode."""


@dataclass
class Episodes:
    """A loaded dataset.

    Attributes:
        states: ``(N, T+1, S)`` float32 env states.
        actions: ``(N, T, A_env)`` float32 env actions.
        images: ``(N, T+1, H, W, 3)`` uint8 renders, or None when not loaded.
        manifest: The dataset's manifest.
    """

    states: Tensor
    actions: Tensor
    images: Tensor | None
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def select(self, index: Tensor | slice) -> Episodes:
        """The episodes at ``index``."""
        images = None if self.images is None else self.images[index]
        return Episodes(self.states[index], self.actions[index], images, self.manifest)


# --------------------------------------------------------------------------------------------
# Behaviour policy
# --------------------------------------------------------------------------------------------


def _uniform(generator: torch.Generator, n: int, bounds: tuple[float, float]) -> Tensor:
    """``(n, 1)`` uniform draws in ``bounds``."""
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand((n, 1), generator=generator)


def rollout_policy(
    env: Any, n: int, steps: int, generator: torch.Generator, policy: Policy
) -> tuple[Tensor, Tensor]:
    """Roll the behaviour policy for ``n`` episodes of ``steps`` env steps from ``env.reset``.

    Returns:
        States ``(n, steps+1, S)`` and actions ``(n, steps, A_env)`` (inside the bounds).
    """
    from grasplab.envs.policies import waypoint_policy

    low, high = env.action_low, env.action_high
    state = env.reset(generator, n)
    goal = env.reset(generator, n)
    seeking = torch.rand((n, 1), generator=generator) < policy.goal_fraction
    sigma = torch.where(
        seeking, _uniform(generator, n, policy.goal_noise), _uniform(generator, n, policy.ou_sigma)
    )
    noise = sigma * torch.randn((n, env.action_dim), generator=generator)
    theta = policy.ou_theta
    states, actions = [state], []
    for _ in range(steps):
        fresh = env.reset(generator, n)
        goal = torch.where(env.success(state, goal).unsqueeze(-1), fresh, goal)
        kick = torch.randn((n, env.action_dim), generator=generator)
        noise = (1 - theta) * noise + sigma * math.sqrt(2 * theta - theta**2) * kick
        drive = torch.where(seeking, waypoint_policy(env, state, goal), torch.zeros_like(noise))
        action = torch.maximum(torch.minimum(drive + noise, high), low)
        state = env.step(state, action)
        states.append(state)
        actions.append(action)
    return torch.stack(states, dim=1), torch.stack(actions, dim=1)


def render_episodes(env: Any, states: Tensor, chunk: int = 2048) -> Tensor:
    """Images ``(n, T+1, H, W, 3)`` uint8 of states ``(n, T+1, S)``, rendered in chunks."""
    flat = states.reshape(-1, states.shape[-1])
    parts = [env.render(flat[i : i + chunk]) for i in range(0, flat.shape[0], chunk)]
    return torch.cat(parts).reshape(*states.shape[:2], *parts[0].shape[1:])


def rollout_sim(
    sim: Any, n: int, steps: int, generator: torch.Generator, policy: Policy, seed: int
) -> tuple[Tensor, Tensor]:
    """Roll OU-noise actions for ``n`` episodes of ``steps`` env steps in a real simulator.

    Starts are the simulator's resets with seeds ``seed, seed + 1, ...``; each action is the
    middle of the action box plus half its width times the OU noise (clipped to the box).

    Returns:
        States ``(n, steps+1, S)`` and actions ``(n, steps, A_env)`` float64.
    """
    low = torch.as_tensor(sim.action_low, dtype=torch.float64)
    high = torch.as_tensor(sim.action_high, dtype=torch.float64)
    mid, half = (low + high) / 2, (high - low) / 2
    sigma = _uniform(generator, n, policy.ou_sigma).double()
    noise = sigma * torch.randn((n, sim.action_dim), generator=generator, dtype=torch.float64)
    theta, actions = policy.ou_theta, []
    for _ in range(steps):
        kick = torch.randn((n, sim.action_dim), generator=generator, dtype=torch.float64)
        noise = (1 - theta) * noise + sigma * math.sqrt(2 * theta - theta**2) * kick
        actions.append(torch.maximum(torch.minimum(mid + half * noise, high), low))
    start = torch.as_tensor(sim.random_states(n, seed=seed), dtype=torch.float64)
    flat = torch.stack(actions, dim=1)
    states = sim.execute(start, start, flat.reshape(n, steps // sim.action_block, -1)).states
    return states, flat


def rollout_pusher(sim: Any, n: int, steps: int, seed: int) -> tuple[Tensor, Tensor]:
    """Roll the scripted Push-T pusher (:mod:`grasplab.envs.pusht_policy`) closed loop.

    Starts are the simulator's resets with seeds ``seed, seed + 1, ...``; the pusher's own
    random stream is seeded with ``seed``.

    Returns:
        States ``(n, steps+1, 5)`` and actions ``(n, steps, 2)`` float64.
    """
    import numpy as np

    from grasplab.envs.pusht_policy import ScriptedPusher

    state = np.asarray(sim.random_states(n, seed=seed), dtype=np.float64)
    sim.reset_to(state)
    pusher = ScriptedPusher(n, np.random.default_rng(seed))
    states, actions = [state], []
    for _ in range(steps):
        action = pusher.act(states[-1])
        actions.append(action)
        states.append(np.asarray(sim.step(action), dtype=np.float64))
    return torch.from_numpy(np.stack(states, 1)), torch.from_numpy(np.stack(actions, 1))


BEHAVIOURS = ("default", "pusher")
"""Behaviour policies of :func:`collect`: ``default`` (the env's noisy goal reaching + OU noise;
OU noise alone in a simulator) or ``pusher`` (the scripted Push-T pusher, ``sim:pusht`` only)."""


# --------------------------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------------------------


def shard_name(index: int) -> str:
    """File name of shard ``index``."""
    return f"shard-{index:05d}.safetensors"


def _plan(episodes: int, shard_episodes: int) -> list[int]:
    """Episodes per shard."""
    full, rest = divmod(episodes, shard_episodes)
    return [shard_episodes] * full + ([rest] if rest else [])


def _spec(
    env_name: str,
    episodes: int,
    steps: int,
    seed: int,
    action_block: int,
    shard_episodes: int,
    env: Any,
    policy: Policy,
    env_overrides: dict[str, Any],
    behaviour: str = "default",
) -> dict[str, Any]:
    """The manifest fields that identify a collection (must match to resume)."""
    extra = {} if behaviour == "default" else {"behaviour": behaviour}
    return {
        **extra,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "env": env_name,
        "env_overrides": json.loads(json.dumps(env_overrides)),
        "env_config": json.loads(json.dumps(_env_config(env))),
        "episodes": episodes,
        "steps": steps,
        "seed": seed,
        "action_block": action_block,
        "shard_episodes": shard_episodes,
        "policy": json.loads(json.dumps(dataclasses.asdict(policy))),
        "state_dim": int(env.state_dim),
        "action_dim": int(env.action_dim),
        "image_size": int(env.image_size),
    }


def _env_config(env: Any) -> dict[str, Any]:
    """A torch env's config, or a simulator's name (it has no config dataclass)."""
    config = getattr(env, "config", None)
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return {"simulator": str(getattr(env, "name", type(env).__name__))}


def _validate_args(episodes: int, steps: int, action_block: int, shard_episodes: int) -> None:
    """Raise ``ValueError`` naming a bad collection argument."""
    for name, value in [
        ("episodes", episodes),
        ("steps", steps),
        ("action_block", action_block),
        ("shard_episodes", shard_episodes),
    ]:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"collect: {name} must be an int >= 1, got {value!r}")
    if steps % action_block:
        raise ValueError(
            f"collect: steps={steps} must be a multiple of action_block={action_block}"
        )


def _resume_shards(out: Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Valid shard records of an existing manifest in ``out`` (empty when starting fresh).

    Raises:
        DatasetError: When ``out`` holds a different collection.
    """
    path = out / MANIFEST
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    keys = set(spec) | {"behaviour"}  # recorded only when not the default
    diff = sorted(k for k in keys if old.get(k) != spec.get(k))
    if diff:
        raise DatasetError(
            f"collect: {out} holds a different collection (differs in {diff}); "
            "use another out directory"
        )
    return [r for r in old.get("shards", []) if _shard_ok(out, r)]


def _shard_ok(out: Path, record: dict[str, Any]) -> bool:
    """Whether a listed shard exists with the recorded size and hash."""
    file = out / record["file"]
    return (
        file.is_file()
        and file.stat().st_size == record["bytes"]
        and sha256_file(file) == record["sha256"]
    )


def _write_shard(
    out: Path, index: int, env: Any, n: int, spec: dict[str, Any], policy: Policy
) -> dict[str, Any]:
    """Generate and atomically write shard ``index``; returns its manifest record."""
    generator = torch.Generator().manual_seed(spec["seed"] * 1_000_003 + index)
    if spec.get("behaviour") == "pusher":
        first = spec["seed"] * 1_000_003 + index * spec["shard_episodes"]
        states, actions = rollout_pusher(env, n, spec["steps"], first)
    elif is_sim(spec["env"]):
        first = spec["seed"] * 1_000_003 + index * spec["shard_episodes"]
        states, actions = rollout_sim(env, n, spec["steps"], generator, policy, first)
    else:
        states, actions = rollout_policy(env, n, spec["steps"], generator, policy)
    images = render_episodes(env, states)
    file = out / shard_name(index)
    save_tensors_atomic(
        file, {"images": images, "states": states.float(), "actions": actions.float()}
    )
    return {
        "index": index,
        "file": file.name,
        "episodes": n,
        "bytes": file.stat().st_size,
        "sha256": sha256_file(file),
    }


def collect(
    env_name: str,
    episodes: int,
    steps: int,
    seed: int,
    out_dir: str | Path,
    action_block: int = 1,
    shard_episodes: int = 100,
    max_shards: int | None = None,
    progress: bool = True,
    *,
    behaviour: str = "default",
    **env_overrides: Any,
) -> dict[str, Any]:
    """Collect (or resume collecting) ``episodes`` behaviour-policy episodes into ``out_dir``.

    Args:
        env_name: Torch-native environment (``grasplab.envs.make``) or ``sim:<simulator>``
            (``grasplab.envs.make_sim``; ``env_overrides`` are then its keyword arguments).
        episodes: Number of episodes ``N``.
        steps: Env steps per episode ``T`` (a multiple of ``action_block``).
        seed: Collection seed; shard ``i`` uses its own stream derived from ``(seed, i)``.
        out_dir: Dataset directory (created).
        action_block: Frame-skip that models trained on this data default to.
        shard_episodes: Episodes per shard.
        max_shards: Stop after writing this many new shards (to split a long collection).
        progress: Show a progress bar.
        behaviour: ``default`` or ``pusher`` (the scripted Push-T pusher; ``sim:pusht`` only),
            see :data:`BEHAVIOURS`; recorded in the manifest when not the default.
        **env_overrides: Environment config overrides (e.g. ``layout="medium"``).

    Returns:
        The manifest (also written to ``out_dir/manifest.json``).
    """
    _validate_args(episodes, steps, action_block, shard_episodes)
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {BEHAVIOURS}, got {behaviour!r}")
    if behaviour == "pusher" and env_name != "sim:pusht":
        raise ValueError(f"behaviour=pusher drives Push-T only (env=sim:pusht), not {env_name!r}")
    env, policy = _make_env(env_name, action_block, env_overrides), Policy()
    try:
        return _collect(
            env_name,
            episodes,
            steps,
            seed,
            out_dir,
            action_block,
            shard_episodes,
            max_shards,
            progress,
            env,
            policy,
            env_overrides,
            behaviour,
        )
    finally:
        if is_sim(env_name):
            env.close()


def _make_env(env_name: str, action_block: int, overrides: dict[str, Any]) -> Any:
    """A torch env, or for ``sim:<name>`` a real simulator with ``action_block``."""
    from grasplab.envs import make, make_sim, sim_name

    if is_sim(env_name):
        return make_sim(sim_name(env_name), action_block=action_block, **overrides)
    return make(env_name, **overrides)


def _collect(
    env_name: str,
    episodes: int,
    steps: int,
    seed: int,
    out_dir: str | Path,
    action_block: int,
    shard_episodes: int,
    max_shards: int | None,
    progress: bool,
    env: Any,
    policy: Policy,
    env_overrides: dict[str, Any],
    behaviour: str = "default",
) -> dict[str, Any]:
    """:func:`collect` once the env is built."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = _spec(
        env_name,
        episodes,
        steps,
        seed,
        action_block,
        shard_episodes,
        env,
        policy,
        env_overrides,
        behaviour,
    )
    for stale in out.glob(".shard-*.tmp"):
        stale.unlink()
    records = {r["index"]: r for r in _resume_shards(out, spec)}
    sizes = _plan(episodes, shard_episodes)
    todo = [i for i in range(len(sizes)) if i not in records][:max_shards]
    start = time.perf_counter()
    for i in _progress(todo, progress, f"collect {env_name}"):
        records[i] = _write_shard(out, i, env, sizes[i], spec, policy)
        _write_manifest(out, spec, records, len(sizes))
    seconds = time.perf_counter() - start
    manifest = _write_manifest(out, spec, records, len(sizes), seconds, sum(sizes[i] for i in todo))
    return manifest


def _progress(items: list[int], enabled: bool, desc: str) -> Any:
    """``items`` wrapped in a tqdm bar when enabled."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="shard", file=sys.stderr)


def _write_manifest(
    out: Path,
    spec: dict[str, Any],
    records: dict[int, dict[str, Any]],
    n_shards: int,
    seconds: float | None = None,
    new_episodes: int = 0,
) -> dict[str, Any]:
    """Write the manifest listing the finished shards in index order."""
    shards = [records[i] for i in sorted(records)]
    manifest = dict(spec)
    manifest["shards"] = shards
    manifest["complete"] = len(shards) == n_shards
    manifest["bytes"] = sum(r["bytes"] for r in shards)
    old = _read_manifest_or_empty(out)
    manifest["collection"] = old.get("collection", [])
    if seconds is not None and new_episodes:
        frames = new_episodes * (spec["steps"] + 1)
        manifest["collection"].append(
            {
                "episodes": new_episodes,
                "seconds": round(seconds, 3),
                "frames_per_second": round(frames / seconds, 1),
            }
        )
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def _read_manifest_or_empty(out: Path) -> dict[str, Any]:
    """The manifest in ``out`` or ``{}``."""
    path = out / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_episodes(
    data_dir: str | Path, images: bool = True, verify: bool = True, require_complete: bool = True
) -> Episodes:
    """Load the shards listed in the manifest (hash-checked), concatenated in index order.

    Args:
        data_dir: Dataset directory.
        images: Also load the images (skip for state models to save memory).
        verify: Check every shard's size and SHA-256 against the manifest.
        require_complete: Refuse a dataset whose collection has not finished.

    Raises:
        DatasetError: Incomplete dataset, or a shard missing, truncated or tampered with.
    """
    manifest = read_manifest(data_dir)
    if require_complete and not manifest.get("complete"):
        raise DatasetError(f"dataset {data_dir}: collection incomplete; rerun collect to resume")
    keys = ["states", "actions"] + (["images"] if images else [])
    parts: dict[str, list[Tensor]] = {k: [] for k in keys}
    for record in manifest["shards"]:
        if verify and not _shard_ok(Path(data_dir), record):
            raise DatasetError(
                f"dataset {data_dir}: shard {record['file']} is missing or does "
                "not match its recorded size/SHA-256"
            )
        with safe_open(str(Path(data_dir) / record["file"]), framework="pt") as f:
            for k in keys:
                parts[k].append(f.get_tensor(k))
    if not manifest["shards"]:
        raise DatasetError(f"dataset {data_dir}: no shards")
    cat = {k: torch.cat(v) for k, v in parts.items()}
    return Episodes(cat["states"], cat["actions"], cat.get("images"), manifest)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """``key=value`` value: int, float, bool, JSON list, else the string itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.startswith("["):
        try:
            return tuple(json.loads(text))
        except json.JSONDecodeError:
            pass
    return text


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; ``ValueError`` on an item without ``=``."""
    out: dict[str, Any] = {}
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}")
        out[key] = parse_value(value)
    return out


COLLECT_KEYS = {
    "env",
    "episodes",
    "steps",
    "seed",
    "out",
    "action_block",
    "shard_episodes",
    "max_shards",
    "progress",
    "behaviour",
}


def collect_from(settings: dict[str, Any]) -> dict[str, Any]:
    """Collect a dataset from ``grasplab collect``'s ``key=value`` settings; its manifest.

    Args:
        settings: :data:`COLLECT_KEYS` (``env``, ``episodes``, ``steps`` and ``out`` required)
            plus fields of the env's config (a simulator: ``workers``, ``image_size``).

    Raises:
        ValueError: A required key is missing or a key is unknown (naming the valid ones).
        ImportError: The simulator's extra is not installed.
    """
    missing = sorted({"env", "episodes", "steps", "out"} - set(settings))
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    from grasplab.envs import default_config

    env = str(settings["env"])
    if is_sim(env):
        fields = {"workers", "image_size"}
    else:
        fields = {f.name for f in dataclasses.fields(default_config(env))}
    unknown = sorted(set(settings) - COLLECT_KEYS - fields)
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown}; collect keys: {sorted(COLLECT_KEYS)}, "
            f"{env} config fields: {sorted(fields)}"
        )
    return collect(
        settings["env"],
        settings["episodes"],
        settings["steps"],
        settings.get("seed", 0),
        str(settings["out"]),
        settings.get("action_block", 1),
        settings.get("shard_episodes", 100),
        settings.get("max_shards"),
        settings.get("progress", True),
        behaviour=settings.get("behaviour", "default"),
        **{k: v for k, v in settings.items() if k in fields},
    )


def summary_line(manifest: dict[str, Any], out: str | Path) -> str:
    """One line: episodes, frames, bytes on disk, collection speed."""
    done = sum(r["episodes"] for r in manifest["shards"])
    frames = done * (manifest["steps"] + 1)
    runs = manifest.get("collection", [])
    secs = sum(r["seconds"] for r in runs)
    eps = sum(r["episodes"] for r in runs)
    speed = f"{eps * (manifest['steps'] + 1) / secs:.0f} frames/s" if secs else "n/a"
    state = "complete" if manifest["complete"] else "INCOMPLETE (rerun to resume)"
    return (
        f"{out}: {done}/{manifest['episodes']} episodes, {frames} frames, "
        f"{manifest['bytes'] / 2**20:.1f} MiB on disk, {speed} over {secs:.1f} s; {state}"
    )


__getattr__ = moved_names(__name__, {"main": "grasplab.cli.collect.main"})
