"""Per-episode random streams: an episode's draws do not depend on the batch it is planned in.

A planner solves ``B`` problems in one batched call. If its noise came from one
``torch.Generator`` shared by the batch, problem ``b``'s draws would depend on ``B`` and on
its row, so the same episode planned alone, in a chunk of 8 or in one batch of all test goals
would get different plans. :class:`EpisodeStreams` gives row ``b`` of every draw its own
stream, keyed by the episode (protocol seed, split, episode index, planner seed).

The generator is counter-based: element ``j`` of the ``c``-th draw of stream ``k`` is a pure
function of ``(k, c, j)``, SplitMix64's output function (Steele, Lea and Flood 2014; the
finaliser of Java's ``SplittableRandom``, which passes BigCrush) applied to
``mix64(k) + (c * 2**32 + j) * 0x9E3779B97F4A7C15``. It is written in int64 torch ops (two's
complement wrap-around, logical shifts by masking), so one call draws for all ``B`` rows with
a fixed number of kernels on any device, with no Python loop over episodes. We chose it over
Philox-4x32-10 because it needs ~11 integer ops per 64 random bits instead of ~60, which keeps
the draw within a few percent of ``torch.randn`` on the CPU (BENCHMARKS.md), and over
per-episode ``torch.Generator`` objects because those need one kernel launch per episode and
draw. Normals come from the Box-Muller transform of two 24-bit (float32) or 32-bit
(float64) uniforms per 64-bit output; every operation is elementwise, so a row's values are
bit-identical whatever the batch (same device type and dtype; tested).

A planner that draws the same shape every iteration (GRASP's state noise) pays the ~35 kernel
launches of a draw once per block of draws: :meth:`EpisodeStreams.normal` generates the next
``k`` draws of a repeated shape in one pass (``k`` doubles from 1 up to
:data:`BLOCK_DRAWS`, within :data:`BLOCK_NUMBERS` numbers), and serves them one by one. Element
``j`` of draw ``c`` is the same pure function of ``(key, c, j)`` either way, so blocks change
no number (tested); a draw of another shape or kind discards the block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64
_M1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_M2 = -7723592293110705685  # 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1
BLOCK_DRAWS = 32
"""Most draws of one repeated shape generated in one pass."""
BLOCK_NUMBERS = 1 << 17
"""Most numbers (all rows) generated in one pass ahead of their draws."""
SPLITS = {"tune": 1, "test": 2, "floor": 3}
"""Split codes in stream keys; ``floor`` streams draw the random-policy floor's actions."""


def mix64_int(x: int) -> int:
    """SplitMix64's output function on a Python int (the reference the tensor version matches)."""
    x &= _MASK64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _signed(x: int) -> int:
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


def stream_key(*parts: int) -> int:
    """One signed 64-bit key from integers, hashed in order (``mix64`` chained over ``parts``)."""
    h = 0x6A09E667F3BCC909
    for part in parts:
        h = mix64_int(h ^ (int(part) & _MASK64))
    return _signed(h)


def mix64(x: Tensor) -> Tensor:
    """SplitMix64's output function on an int64 tensor, in place (returns ``x``)."""
    t = torch.empty_like(x)
    torch.bitwise_right_shift(x, 30, out=t).bitwise_and_((1 << 34) - 1)
    x.bitwise_xor_(t).mul_(_M1)
    torch.bitwise_right_shift(x, 27, out=t).bitwise_and_((1 << 37) - 1)
    x.bitwise_xor_(t).mul_(_M2)
    torch.bitwise_right_shift(x, 31, out=t).bitwise_and_((1 << 33) - 1)
    return x.bitwise_xor_(t)


class EpisodeStreams:
    """``B`` independent random streams, one per planning problem (row).

    Pass it where a planner takes ``generator=``: every draw the planner makes gives row ``b``
    the next numbers of stream ``b``. Draws advance all streams together (one counter), so a
    row's numbers depend only on its key and on how many draws came before.

    Args:
        keys: Signed 64-bit keys ``(B,)`` (see :func:`stream_key`, :meth:`for_episodes`).
        device: Where draws are made (default: CPU).
    """

    def __init__(self, keys: Sequence[int] | Tensor, device: torch.device | str = "cpu") -> None:
        keys = torch.as_tensor(keys, dtype=torch.int64)
        if keys.dim() != 1 or keys.numel() == 0:
            raise ValueError(
                f"EpisodeStreams: keys must be (B,) with B >= 1, got {tuple(keys.shape)}"
            )
        self.device = torch.device(device)
        self.keys = keys.to(self.device)
        self._base = mix64(self.keys.clone())
        self.draws = 0
        self._block: _Block | None = None

    @classmethod
    def for_episodes(
        cls,
        seed: int,
        split: str,
        indices: Sequence[int],
        planner_seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> EpisodeStreams:
        """Streams of the episodes ``indices`` of ``split`` under protocol seed ``seed``."""
        if split not in SPLITS:
            raise ValueError(
                f"EpisodeStreams: split must be one of {sorted(SPLITS)}, got {split!r}"
            )
        code = SPLITS[split]
        keys = [stream_key(seed, code, int(i), planner_seed) for i in indices]
        return cls(keys, device)

    @property
    def batch(self) -> int:
        """``B``, the number of streams."""
        return int(self.keys.shape[0])

    def _bits(self, per_row: int, count: int = 1) -> Tensor:
        """``(B, count, per_row)`` int64 outputs of the next ``count`` draws (not advanced)."""
        if per_row >= 1 << 32:
            raise ValueError(f"EpisodeStreams: at most 2**32 - 1 numbers per row, got {per_row}")
        draw = torch.arange(self.draws, self.draws + count, dtype=torch.int64, device=self.device)
        counter = torch.arange(per_row, dtype=torch.int64, device=self.device)
        counter = counter.view(1, -1).add(draw.view(-1, 1).bitwise_left_shift(32)).mul_(_GOLDEN)
        return mix64(torch.add(self._base.view(-1, 1, 1), counter.unsqueeze(0)))

    def _rows(self, shape: tuple[int, ...], batch_dim: int) -> tuple[int, tuple[int, ...]]:
        shape = tuple(int(s) for s in shape)
        if not shape or shape[batch_dim] != self.batch:
            raise ValueError(
                f"EpisodeStreams: draw of shape {shape} must have B={self.batch} at dim {batch_dim}"
            )
        rest = shape[:batch_dim] + shape[batch_dim + 1 :]
        return math.prod(rest), rest

    def _arrange(self, flat: Tensor, rest: tuple[int, ...], batch_dim: int, device) -> Tensor:
        out = flat.reshape(self.batch, *rest)
        if batch_dim != 0:
            out = out.movedim(0, batch_dim).contiguous()
        return out if out.device == torch.device(device) else out.to(device)

    def normal(
        self,
        shape: Sequence[int],
        *,
        batch_dim: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Standard normal draws of ``shape``; slice ``b`` along ``batch_dim`` from stream ``b``."""
        n, rest = self._rows(tuple(shape), batch_dim)
        block = self._block
        if block is None or block.kind != (n, dtype) or block.next_draw != self.draws:
            size = 1 if block is None or block.kind != (n, dtype) else 2 * block.size
            size = max(1, min(size, BLOCK_DRAWS, BLOCK_NUMBERS // (self.batch * n)))
            block = self._block = _Block((n, dtype), self._normals(n, dtype, size), self.draws)
        flat = block.draws[block.used]
        block.used += 1
        self.draws += 1
        return self._arrange(flat, rest, batch_dim, device or self.device)

    def _normals(self, n: int, dtype: torch.dtype, count: int) -> Tensor:
        """The next ``count`` normal draws of ``n`` per row, ``(count, B, n)`` (Box-Muller)."""
        work = torch.float64 if dtype == torch.float64 else torch.float32
        bits = 32 if work == torch.float64 else 24
        h = self._bits((n + 1) // 2, count)
        radius = torch.bitwise_right_shift(h, 64 - bits).bitwise_and_((1 << bits) - 1).to(work)
        angle = h.bitwise_and_((1 << bits) - 1).to(work)
        radius.add_(0.5).mul_(2.0**-bits).log_().mul_(-2.0).sqrt_()
        angle.add_(0.5).mul_(2.0 * math.pi * 2.0**-bits)
        z = torch.empty((self.batch, count, 2, radius.shape[2]), dtype=work, device=self.device)
        torch.mul(radius, torch.cos(angle), out=z[:, :, 0])
        torch.mul(radius, angle.sin_(), out=z[:, :, 1])
        return z.view(self.batch, count, -1)[:, :, :n].transpose(0, 1).to(dtype).contiguous()

    def uniform(
        self,
        shape: Sequence[int],
        *,
        batch_dim: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Uniform draws in ``[0, 1)``; slice ``b`` from stream ``b``.

        53 random bits per number in float64, 24 otherwise.
        """
        n, rest = self._rows(tuple(shape), batch_dim)
        bits = 53 if dtype == torch.float64 else 24
        h = torch.bitwise_right_shift(self._bits(n)[:, 0], 64 - bits)
        h.bitwise_and_((1 << bits) - 1)
        self.draws += 1
        flat = h.to(torch.float64).mul_(2.0**-bits).to(dtype)
        return self._arrange(flat, rest, batch_dim, device or self.device)

    def select(self, rows: Tensor | Sequence[int]) -> EpisodeStreams:
        """The streams of ``rows``, continuing at this object's draw counter."""
        index = torch.as_tensor(rows, dtype=torch.int64, device=self.keys.device)
        out = EpisodeStreams(self.keys.index_select(0, index), self.device)
        out.draws = self.draws
        block = self._block
        if block is not None and block.next_draw == self.draws:
            moved = index.to(self.device)
            rows = block.draws.index_select(1, moved)
            out._block = _Block(block.kind, rows, block.first, block.used)
        return out


class _Block:
    """Normal draws generated ahead: ``draws[i]`` (``(B, n)``) is draw ``first + i``."""

    def __init__(self, kind: tuple, draws: Tensor, first: int, used: int = 0) -> None:
        self.kind = kind
        self.draws = draws
        self.first = first
        self.used = used

    @property
    def next_draw(self) -> int:
        """The draw counter of the next draw served (``-1`` when the block is spent)."""
        return self.first + self.used if self.used < self.size else -1

    @property
    def size(self) -> int:
        """Draws in the block."""
        return int(self.draws.shape[0])


RandomSource = torch.Generator | EpisodeStreams
"""What a planner's ``generator=`` accepts: one generator for the batch, or per-row streams."""
