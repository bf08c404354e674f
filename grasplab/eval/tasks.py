"""Task sets of a protocol: sampled by the env, or taken from the episodes of a recorded dataset.

The ``dataset`` source follows DINO-WM and stable-worldmodel, with two differences that keep the
numbers honest: the tuning and test tasks come from DISJOINT, declared episode ranges, and a
world model is not evaluated on the episodes it was trained on unless that is asked for
(``allow_train_overlap``). A task of episode ``e`` at offset ``t``: the start is the recorded
state ``s[e, t]``; the goal is the state the SIMULATOR reaches from that start under the
recorded actions ``a[e, t : t + k]`` (``reset_to(start)``, then ``k`` env steps), never the
recorded ``s[e, t + k]``, so that the goal is reachable in the simulator that judges success.

A dataset task set is part of the protocol and of its fingerprint, together with the dataset's
identity (:func:`grasplab.world_models.data.dataset_identity`, a hash of its shards): a changed
dataset changes the fingerprint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import Tensor

    from grasplab.envs import Tasks

SPLITS = ("tune", "test")


@dataclass(frozen=True)
class TaskSet:
    """Where a protocol's tasks come from (the ``tasks:`` config group; frozen, validated)."""

    source: Literal["env", "dataset"] = "env"
    """``env``: the env samples them (its seed streams). ``dataset``: recorded episodes."""
    data: str = ""
    """``dataset``: the dataset directory (grasplab's ``collect`` format)."""
    k: int = 0
    """``dataset``: env steps from start to goal (0: the protocol's ``horizon * action_block``);
    a multiple of the protocol's ``action_block``."""
    offset: int = -1
    """``dataset``: the start's step within its episode; -1: drawn per task from the seed."""
    splits: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    """``dataset``: episode ranges ``[first, stop)`` per split (``tune``, ``test``), disjoint."""
    allow_train_overlap: bool = False
    """``dataset``: allow tasks from the episodes the world model was trained on."""

    def __post_init__(self) -> None:
        splits = {str(k): tuple(v) for k, v in dict(self.splits).items()}
        object.__setattr__(self, "splits", splits)
        if self.source not in ("env", "dataset"):
            raise ValueError(f"tasks.source must be 'env' or 'dataset', got {self.source!r}")
        if self.source == "env":
            if self.data or self.k or self.offset != -1 or splits:
                raise ValueError("tasks: data, k, offset and splits belong to source=dataset")
            return
        self._check_dataset(splits)

    def _check_dataset(self, splits: dict[str, tuple[Any, ...]]) -> None:
        if not isinstance(self.data, str) or not self.data:
            raise ValueError("tasks.data: source=dataset needs the dataset directory")
        for name, value in (("k", self.k), ("offset", self.offset)):
            if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                raise ValueError(f"tasks.{name} must be an int, got {value!r}")
        if self.k < 0:
            raise ValueError(f"tasks.k must be >= 0, got {self.k}")
        if sorted(splits) != sorted(SPLITS):
            raise ValueError(f"tasks.splits must name exactly {list(SPLITS)}, got {sorted(splits)}")
        for name, bounds in splits.items():
            ok = len(bounds) == 2 and all(isinstance(b, int) for b in bounds)
            if not ok or not 0 <= bounds[0] < bounds[1]:
                raise ValueError(
                    f"tasks.splits.{name} must be [first, stop) with 0 <= first < stop, got "
                    f"{list(bounds)}"
                )
        (a, b), (c, d) = splits["tune"], splits["test"]
        if a < d and c < b:
            raise ValueError(
                f"tasks.splits overlap: tune episodes [{a}, {b}) and test episodes [{c}, {d}) "
                "must be disjoint"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TaskSet:
        """Build from a plain dict (``None`` or ``{}``: env-sampled); unknown keys named."""
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"tasks: unknown key(s) {unknown}; known: {sorted(names)}")
        if "splits" in values:
            values["splits"] = {k: tuple(v) for k, v in dict(values["splits"] or {}).items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; ``{}`` for the default env-sampled task set (old fingerprints hold)."""
        if self.source == "env":
            return {}
        out = dataclasses.asdict(self)
        out["splits"] = {k: list(v) for k, v in self.splits.items()}
        return out

    def episodes(self, split: str) -> range:
        """The episode range of ``split``."""
        first, stop = self.splits[split]
        return range(first, stop)

    def identity(self) -> str:
        """The dataset's identity (see the module docstring); ``""`` for env-sampled tasks."""
        if self.source == "env":
            return ""
        from grasplab.world_models.manifest import dataset_identity, read_manifest

        return dataset_identity(read_manifest(self.data))


def check_train_overlap(task_set: TaskSet, model_info: Mapping[str, Any], model: str) -> None:
    """Refuse tasks from the episodes a checkpoint was trained on (unless allowed).

    Args:
        task_set: The protocol's task set.
        model_info: The checkpoint's ``info`` (``grasplab train`` records ``data.identity`` /
            ``data.shards_sha256`` and ``train_episodes`` / ``val_episodes``).
        model: The checkpoint's name, for the message.

    Raises:
        ValueError: One line naming both episode ranges, when a split of the same dataset
            overlaps the training episodes and ``allow_train_overlap`` is false.
    """
    if task_set.source != "dataset" or task_set.allow_train_overlap:
        return
    trained = trained_episodes(model_info)
    if trained is None:
        return
    shift = source_shift(task_set, trained[0])
    if shift is None:
        return
    first, stop = trained[1]
    for split in SPLITS:
        episodes = task_set.episodes(split)
        a, b = episodes.start + shift, episodes.stop + shift
        if a < stop and first < b:
            where = f" (episodes [{a}, {b}) of its source)" if shift else ""
            raise ValueError(
                f"tasks.splits.{split} episodes [{episodes.start}, {episodes.stop}){where} "
                f"overlap the training episodes [{first}, {stop}) of world model {model!r} on the "
                f"same dataset {task_set.data!r}; pick held-out episodes or set "
                "tasks.allow_train_overlap=true"
            )


def source_shift(task_set: TaskSet, identity: str) -> int | None:
    """How far the task set's episode numbers lie below those of dataset ``identity``.

    0 when ``task_set.data`` is that dataset; ``first`` when it is an excerpt of it (a
    manifest's ``excerpt``: episodes ``[first, stop)`` of the source, renumbered from 0, as
    :func:`grasplab.bench.quality_pusht.heldout_excerpt` writes); None when unrelated.
    """
    from grasplab.world_models.manifest import dataset_identity, read_manifest

    manifest = read_manifest(task_set.data)
    if dataset_identity(manifest) == identity:
        return 0
    excerpt = manifest.get("excerpt") or {}
    if excerpt.get("source_identity") == identity and excerpt.get("episodes"):
        return int(excerpt["episodes"][0])
    return None


def trained_episodes(info: Mapping[str, Any]) -> tuple[str, tuple[int, int]] | None:
    """``(dataset identity, (first, stop))`` a checkpoint trained on, or None if unrecorded."""
    from grasplab.world_models.manifest import dataset_identity

    data = info.get("data") or {}
    identity = data.get("identity")
    if not identity and data.get("shards_sha256"):
        identity = dataset_identity({"shards": [{"sha256": h} for h in data["shards_sha256"]]})
    episodes = info.get("train_episodes")
    if episodes is None and info.get("val_episodes"):
        episodes = [0, info["val_episodes"][0]]
    if not identity or episodes is None:
        return None
    return identity, (int(episodes[0]), int(episodes[1]))


def dataset_tasks(
    task_set: TaskSet,
    replay: Callable[[Tensor, Tensor], Tensor],
    env: str,
    split: str,
    n: int,
    steps: int,
    action_block: int,
    seed: int,
) -> Tasks:
    """``n`` tasks of ``split`` from the recorded episodes, goals replayed in the true env.

    Args:
        task_set: A ``dataset`` task set.
        replay: ``replay(start (n, S), actions (n, T, action_block * A)) -> final states
            (n, S)`` in the simulator (or torch env) that judges success.
        env: The protocol's env name; the dataset must have been collected in it.
        split: ``tune`` or ``test``.
        n: Number of tasks (episodes of the split's range are used in turn).
        steps: Default ``k`` (the protocol's env steps).
        action_block: Env steps per model step.
        seed: Seed of the offsets (when drawn).

    Raises:
        ValueError: A dataset of another env, a range beyond the dataset, or ``k`` too long.
    """
    import torch

    from grasplab.envs import Tasks
    from grasplab.world_models.data import load_episodes, require_dataset

    require_dataset(task_set.data, env)
    data = load_episodes(task_set.data, images=False)
    if data.manifest.get("env") != env:
        raise ValueError(
            f"tasks.data {task_set.data!r} was collected in {data.manifest.get('env')!r}, "
            f"not in the protocol's env {env!r}"
        )
    episodes = task_set.episodes(split)
    if episodes.stop > len(data):
        raise ValueError(
            f"tasks.splits.{split} [{episodes.start}, {episodes.stop}) lies beyond the "
            f"{len(data)} episodes of {task_set.data!r}"
        )
    k, T = task_set.k or steps, data.actions.shape[1]
    offset = task_set.offset
    if k % action_block or k + max(offset, 0) > T:
        raise ValueError(
            f"tasks.k={k} must be a multiple of action_block={action_block} and fit, from "
            f"offset {offset}, in the dataset's {T}-step episodes"
        )
    g = torch.Generator().manual_seed(seed)
    index = episodes.start + torch.arange(n) % len(episodes)
    t = torch.randint(T - k + 1, (n,), generator=g) if offset < 0 else torch.full((n,), offset)
    start = data.states[index, t]
    actions = data.actions[index[:, None], t[:, None] + torch.arange(k)]
    goal = replay(start, actions.reshape(n, k // action_block, -1))
    nan = torch.full((n,), float("nan"))
    return Tasks(start, goal.to(start.dtype), nan, torch.full((n,), k, dtype=torch.long))


def env_tasks(sim: Any, n: int, seed: int) -> Tasks:
    """``n`` tasks of a simulator: start and goal from its own seeded resets (independent)."""
    import torch

    from grasplab.envs import Tasks

    sample = getattr(sim, "random_states", None)
    if not callable(sample):
        raise ValueError(
            f"simulator {getattr(sim, 'name', sim)!r} has no random_states(n, seed) to sample "
            "tasks; use tasks.source=dataset"
        )
    start = torch.as_tensor(sample(n, seed=seed), dtype=torch.float32)
    goal = torch.as_tensor(sample(n, seed=seed + n), dtype=torch.float32)
    nan = torch.full((n,), float("nan"))
    return Tasks(start, goal, nan, torch.zeros(n, dtype=torch.long))
