"""The merging model's token view of a flat weight vector.

The merging model reads a zoo model's flat vector as a sequence of tokens of fixed
sizes: by default 26 tokens of 80 values, then 24 tokens of 16 values (26*80 + 24*16 =
2,464).  This module cuts flat vectors into tokens and glues them back; it knows
nothing of the model, imports neither torch nor numpy at import time, and works on
numpy arrays and torch tensors alike, on one vector ``[P]`` or any leading batch shape
``[..., P]``.

Two views, and the laws they keep (tested with Hypothesis):

* grouped: ``from_tokens(to_tokens(x)) == x``.  ``to_tokens`` returns one array per
  run of equal token sizes (``[..., 26, 80]`` and ``[..., 24, 16]`` by default); these
  are views of ``x`` where the memory layout allows it.
* padded: ``from_padded(to_padded(x)) == x``.  ``to_padded`` returns one array
  ``[..., seq_len, max_size]`` whose short tokens are zero-padded on the right, for
  code that wants a single ``[B, 50, 80]`` block (the pair-serving "50-token view");
  :func:`token_mask` says which entries are real values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from weightlake.errors import ArchitectureError

TOKEN_SIZES: tuple[int, ...] = (80,) * 26 + (16,) * 24
"""Default token sizes, in sequence order: 26 tokens of 80 values, then 24 of 16."""


@dataclass(frozen=True)
class TokenGroup:
    """A run of consecutive tokens of one size: positions ``[first, first + count)``."""

    size: int
    count: int
    first: int
    start: int
    """Flat offset of the run's first value."""

    @property
    def stop(self) -> int:
        """Flat offset one past the run's last value."""
        return self.start + self.size * self.count


def parse_token_sizes(token_sizes: Sequence[int]) -> tuple[int, ...]:
    """Validate token sizes: a non-empty sequence of positive ints; returns a tuple.

    Raises
    ------
    ArchitectureError
        If the sequence is empty or holds a non-positive or non-integer size.
    """
    sizes = tuple(token_sizes)
    if not sizes:
        raise ArchitectureError("token_sizes is empty; expected at least one token size")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ArchitectureError(f"token sizes must be positive ints, got {size!r} in {sizes!r}")
    return sizes


def token_groups(token_sizes: Sequence[int] = TOKEN_SIZES) -> tuple[TokenGroup, ...]:
    """Run-length groups of ``token_sizes``: ``(80, 26), (16, 24)`` by default."""
    sizes = parse_token_sizes(token_sizes)
    groups: list[TokenGroup] = []
    start = 0
    for position, size in enumerate(sizes):
        if groups and groups[-1].size == size:
            last = groups[-1]
            groups[-1] = TokenGroup(size, last.count + 1, last.first, last.start)
        else:
            groups.append(TokenGroup(size, 1, position, start))
        start += size
    return tuple(groups)


def n_values(token_sizes: Sequence[int] = TOKEN_SIZES) -> int:
    """How many flat values the tokens cover (2,464 by default)."""
    return sum(parse_token_sizes(token_sizes))


def to_tokens(flat: Any, token_sizes: Sequence[int] = TOKEN_SIZES) -> tuple[Any, ...]:
    """Cut flat vectors ``[..., P]`` into one token block per run of equal sizes.

    Parameters
    ----------
    flat
        A numpy array or torch tensor whose last axis has ``sum(token_sizes)`` values.
    token_sizes
        Token sizes in sequence order.

    Returns
    -------
    tuple
        One block ``[..., count, size]`` per run; by default ``(tokens80 [..., 26, 80],
        tokens16 [..., 24, 16])``.

    Raises
    ------
    ArchitectureError
        If the last axis does not have ``sum(token_sizes)`` values.
    """
    groups = token_groups(token_sizes)
    _check_last_axis(flat, groups[-1].stop)
    lead = tuple(flat.shape[:-1])
    return tuple(flat[..., g.start:g.stop].reshape(*lead, g.count, g.size) for g in groups)


def from_tokens(*blocks: Any) -> Any:
    """Glue token blocks ``[..., count, size]`` back into flat vectors ``[..., P]``.

    The inverse of :func:`to_tokens`: ``from_tokens(*to_tokens(x)) == x`` bit for bit.

    Raises
    ------
    ArchitectureError
        If no block is given or the blocks' leading shapes differ.
    """
    if not blocks:
        raise ArchitectureError("from_tokens needs at least one token block")
    lead = tuple(blocks[0].shape[:-2])
    for block in blocks:
        if block.ndim < 2 or tuple(block.shape[:-2]) != lead:
            raise ArchitectureError(
                f"token blocks must share their leading shape {lead!r}; got {tuple(block.shape)!r}"
            )
    flats = [block.reshape(*lead, block.shape[-2] * block.shape[-1]) for block in blocks]
    return _concat(flats)


def to_padded(flat: Any, token_sizes: Sequence[int] = TOKEN_SIZES) -> Any:
    """Flat vectors ``[..., P]`` as one zero-padded block ``[..., seq_len, max(token_sizes)]``.

    Raises
    ------
    ArchitectureError
        If the last axis does not have ``sum(token_sizes)`` values.
    """
    width = max(parse_token_sizes(token_sizes))
    padded = [_pad_last(block, width) for block in to_tokens(flat, token_sizes)]
    return _concat(padded, axis=-2)


def from_padded(padded: Any, token_sizes: Sequence[int] = TOKEN_SIZES) -> Any:
    """The inverse of :func:`to_padded`: ``from_padded(to_padded(x)) == x``.

    Raises
    ------
    ArchitectureError
        If ``padded`` is not ``[..., seq_len, max(token_sizes)]``.
    """
    sizes = parse_token_sizes(token_sizes)
    expected = (len(sizes), max(sizes))
    if padded.ndim < 2 or tuple(padded.shape[-2:]) != expected:
        raise ArchitectureError(f"expected a padded block [..., {expected[0]}, {expected[1]}], got {tuple(padded.shape)!r}")
    blocks = [padded[..., g.first:g.first + g.count, :g.size] for g in token_groups(sizes)]
    return from_tokens(*blocks)


def token_mask(token_sizes: Sequence[int] = TOKEN_SIZES) -> list[list[bool]]:
    """Which entries of a padded token block hold real values: ``[seq_len][max_size]``."""
    sizes = parse_token_sizes(token_sizes)
    width = max(sizes)
    return [[column < size for column in range(width)] for size in sizes]


def _check_last_axis(flat: Any, expected: int) -> None:
    shape = tuple(getattr(flat, "shape", ()))
    if not shape or shape[-1] != expected:
        raise ArchitectureError(
            f"expected flat vectors [..., {expected}] (the sum of the token sizes), got shape {shape!r}"
        )


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _concat(arrays: Sequence[Any], axis: int = -1) -> Any:
    if _is_torch(arrays[0]):
        import torch

        return torch.cat(list(arrays), dim=axis)
    import numpy as np

    return np.concatenate(list(arrays), axis=axis)


def _pad_last(block: Any, width: int) -> Any:
    missing = width - block.shape[-1]
    if missing == 0:
        return block
    if _is_torch(block):
        import torch

        return torch.nn.functional.pad(block, (0, missing))
    import numpy as np

    return np.pad(block, [(0, 0)] * (block.ndim - 1) + [(0, missing)])
