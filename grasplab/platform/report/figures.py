"""Figures of a sweep: the Pareto plot, success against horizon, and GIF replays of episodes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grasplab.platform.report.rows import StageOutcome


def _figure(size: tuple[float, float] = (6, 4)) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size, dpi=100)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated ``(time, success)`` points: less time, more success; sorted by time."""
    valid = sorted((t, s) for s, t in points if not math.isnan(t))
    front, best = [], -1.0
    for t, s in valid:
        if s > best:
            front.append((t, s))
            best = s
    return front


def _timed(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The ``(success, time)`` points with a finite, positive time (placeable on a log axis)."""
    return [(s, t) for s, t in points if t is not None and math.isfinite(t) and t > 0]


EARLY = "stopped early (fewer episodes)"


def _count(points: Sequence[Any], shown: Sequence[Any], what: str) -> str:
    """``3 complete trials`` or ``3 complete trials (1 without success, not plotted)``."""
    hidden = len(points) - len(shown)
    return f"{len(points)} {what}" + (f" ({hidden} without success, not plotted)" if hidden else "")


def pareto_plot(outcomes: Sequence[StageOutcome]) -> Any:
    """Success vs median time-to-success (log axis) of every trial on the tuning goals.

    Per planner variant one colour: complete trials filled, trials stopped early by ASHA
    hollow (their success is on fewer episodes), the Pareto front of the complete trials as a
    step line, the chosen config as a star. Trials without any success have no time-to-success
    and are counted in the legend. The legend sits below the axes, in up to 3 columns (one
    per planner variant), so that the plot keeps the full width.
    """
    fig, ax = _figure((10, 5.5))
    for i, o in enumerate(outcomes):
        color = f"C{i % 10}"
        complete = o.complete()
        groups = {
            kind: [p for p, c in zip(o.trials, complete, strict=False) if c == (kind == "complete")]
            for kind in ("complete", "early")
        }
        full, early = _timed(groups["complete"]), _timed(groups["early"])
        ax.scatter(
            [t for _, t in full],
            [100 * s for s, _ in full],
            color=color,
            alpha=0.7,
            label=f"{o.key}: {_count(groups['complete'], full, 'complete trials')}",
        )
        if groups["early"]:
            ax.scatter(
                [t for _, t in early],
                [100 * s for s, _ in early],
                facecolors="none",
                edgecolors=color,
                label=f"{o.key}: {_count(groups['early'], early, EARLY)}",
            )
        front = pareto_front(full)
        if front:
            ax.step([t for t, _ in front], [100 * s for _, s in front], where="post", color=color)
        chosen = _timed(
            [
                (
                    o.tune_metrics.get("success_rate", math.nan),
                    o.tune_metrics.get("median_time_to_success", math.nan),
                )
            ]
        )
        if chosen:
            ax.scatter(
                [chosen[0][1]],
                [100 * chosen[0][0]],
                marker="*",
                s=220,
                color=color,
                edgecolors="black",
                zorder=5,
                label=f"{o.key}: chosen config",
            )
    ax.set_xscale("log")
    ax.set_xlabel("median time-to-success (s, log scale; tuning goals)")
    ax.set_ylabel("success (%)")
    ax.set_ylim(-5, 105)
    ax.set_title("success vs time-to-success per trial (line: Pareto front of complete trials)")
    columns = max(1, min(3, len(outcomes)))
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=columns)
    fig.tight_layout()
    return fig


def horizon_plot(
    outcomes: Sequence[StageOutcome], floors: Mapping[int, Mapping[str, float]]
) -> Any:
    """Test success (with 95% CI) vs horizon per planner variant, random floor dashed."""
    fig, ax = _figure((8, 4))
    for label in dict.fromkeys(o.label for o in outcomes):
        mine = sorted((o for o in outcomes if o.label == label), key=lambda o: o.horizon)
        h = [o.horizon for o in mine]
        y = np.array([100 * o.test["success_rate"] for o in mine])
        low = np.maximum(0.0, y - np.array([100 * o.test["ci_low"] for o in mine]))
        high = np.maximum(0.0, np.array([100 * o.test["ci_high"] for o in mine]) - y)
        ax.errorbar(h, y, yerr=[low, high], marker="o", capsize=3, label=label)
    if floors:
        hs = sorted(floors)
        ax.plot(hs, [100 * floors[h]["success_rate"] for h in hs], "k--", label="random floor")
    ax.set_xlabel("horizon (model steps)")
    ax.set_ylabel("test success (%)")
    ax.set_title("success vs horizon (held-out test goals)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_images(
    outcomes: Sequence[StageOutcome], floors: Mapping[int, Mapping[str, float]], dpi: int
) -> dict[str, bytes]:
    """A sweep's plots as PNG files' bytes, by file name.

    The Pareto scatter always; success vs horizon when the sweep spans several horizons. A
    sweep draws them in a Ray worker (:func:`grasplab.platform.publish.log_plots`), which then
    imports this light module, not the driver's.
    """
    import io

    import matplotlib.pyplot as plt

    plots = {"pareto.png": pareto_plot(outcomes)}
    if len(floors) > 1:
        plots["success_vs_horizon.png"] = horizon_plot(outcomes, floors)
    out = {}
    for name, fig in plots.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight", dpi=dpi)
        plt.close(fig)
        out[name] = buffer.getvalue()
    return out


def save_gif(frames: np.ndarray, path: Path, scale: int = 3, fps: int = 8) -> Path:
    """Write uint8 frames ``(T, H, W, 3)`` as a looping GIF, upscaled by ``scale``."""
    from PIL import Image

    images = [
        Image.fromarray(np.ascontiguousarray(f)).resize(
            (f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST
        )
        for f in frames
    ]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


TRAIL_RGB = (255, 120, 0)


GOAL_RGB = (0, 190, 60)


FAIL_RGB = (220, 30, 30)


HEADER_RGB = (25, 25, 25)


def agent_centres(frames: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres ``(row, col)`` of the agent in each frame and in the goal image.

    The background is the per-pixel median over the frames and the goal image (the agent moves,
    the scene does not); the agent is what differs from it. A frame where nothing differs gets
    NaN.

    Args:
        frames: uint8 ``(T, H, W, 3)``.
        goal: uint8 ``(H, W, 3)``: the goal state rendered.

    Returns:
        ``(T, 2)`` and ``(2,)`` float pixel coordinates.
    """
    stack = np.concatenate([frames, goal[None]]).astype(np.int16)
    background = np.median(stack, axis=0)
    masks = np.abs(stack - background).sum(-1) > 40
    centres = np.full((len(stack), 2), np.nan)
    for i, mask in enumerate(masks):
        rows, cols = np.nonzero(mask)
        if len(rows):
            centres[i] = rows.mean(), cols.mean()
    return centres[:-1], centres[-1]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def episode_frames(
    frames: np.ndarray,
    goal: np.ndarray,
    reached: Sequence[bool],
    title: str,
    min_side: int = 320,
) -> list[Any]:
    """Annotated PIL images of an executed episode, one per frame.

    Each image is the env's render upscaled (nearest) to at least ``min_side`` pixels, with the
    trail of visited positions, the goal marked, and a header: ``title`` (planner, stage,
    episode), the step counter and whether the goal has been reached (``FAILURE`` on the last
    frame of an episode that never reached it).

    Args:
        frames: uint8 ``(T, H, W, 3)``: the start state then every executed env step.
        goal: uint8 ``(H, W, 3)``: the goal state.
        reached: ``(T,)``: goal reached at or before each frame.
        title: First header line.
        min_side: Smallest side of the image part, in pixels.
    """
    from PIL import Image, ImageDraw

    T, H, W, _ = frames.shape
    if len(reached) != T:
        raise ValueError(f"episode_frames: {len(reached)} reached flags for {T} frames")
    scale = max(1, math.ceil(min_side / min(H, W)))
    font, header = _font(14), 44
    centres, goal_at = agent_centres(frames, goal)
    points = [((c + 0.5) * scale) for r, c in centres if not math.isnan(r)]
    rows = [((r + 0.5) * scale) for r, c in centres if not math.isnan(r)]
    trail = list(zip(points, (y + header for y in rows), strict=True))
    seen = np.cumsum(~np.isnan(centres[:, 0]))
    images = []
    for t in range(T):
        image = Image.new("RGB", (W * scale, H * scale + header), HEADER_RGB)
        image.paste(
            Image.fromarray(np.ascontiguousarray(frames[t])).resize(
                (W * scale, H * scale), Image.NEAREST
            ),
            (0, header),
        )
        draw = ImageDraw.Draw(image)
        if not math.isnan(goal_at[0]):
            gx, gy = (goal_at[1] + 0.5) * scale, (goal_at[0] + 0.5) * scale + header
            ring = max(6, scale * 2)
            draw.ellipse((gx - ring, gy - ring, gx + ring, gy + ring), outline=GOAL_RGB, width=3)
            draw.text((gx + ring + 2, gy - ring), "goal", fill=GOAL_RGB, font=font)
        mine = trail[: int(seen[t])]
        if len(mine) > 1:
            draw.line(mine, fill=TRAIL_RGB, width=max(2, scale // 3))
        for x, y in mine:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=TRAIL_RGB)
        if reached[t]:
            flag, color = "goal reached: SUCCESS", GOAL_RGB
        elif t == T - 1:
            flag, color = "goal not reached: FAILURE", FAIL_RGB
        else:
            flag, color = "goal not reached yet", (200, 200, 200)
        draw.text((6, 4), title, fill=(255, 255, 255), font=font)
        draw.text((6, 23), f"step {t}/{T - 1}", fill=(255, 255, 255), font=font)
        draw.text((W * scale // 3, 23), flag, fill=color, font=font)
        images.append(image)
    return images


def episode_gif(
    frames: np.ndarray,
    goal: np.ndarray,
    reached: Sequence[bool],
    title: str,
    path: Path,
    fps: int = 6,
) -> Path:
    """Write :func:`episode_frames` as a looping GIF (the last frame held for 2 s)."""
    images = episode_frames(frames, goal, reached, title)
    durations = [int(1000 / fps)] * (len(images) - 1) + [2000]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False
    )
    return path
