"""A zoo as a Hugging Face ``datasets.Dataset``, for users of that ecosystem (the ``hf`` extra).

:func:`zoo_to_hf` gives one row per model: its metadata columns and ``weights`` (float32, P
values), in torch format; a pair set has :meth:`~weightlake.serve.pairset.PairSet.to_hf`.
The weights column is built on the zoo's decoded block through Arrow (no per-row Python); a zoo
over the memory budget is written to an Arrow file block by block and memory-mapped (``path=``).
Round-trip law: ``ds[i]["weights"]`` equals ``lake.weights_numpy([ds[i]["model_id"]])[0]`` bitwise.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from weightlake.errors import QueryError

META_COLUMNS: tuple[str, ...] = ("model_id", "init", "activation", "epoch", "classes", "n_classes", "class_mask",
                                 "accuracy")
"""Metadata columns carried beside the weights (those a zoo has)."""


def zoo_to_hf(lake: Any, zoo: str | None = None, *, columns: tuple[str, ...] = META_COLUMNS,
              path: str | os.PathLike[str] | None = None) -> Any:
    """A zoo's models as a ``datasets.Dataset`` in torch format, in weight-row (``model_id``) order.

    Parameters
    ----------
    lake : Lake
    zoo : str, optional
        Default: the lake's only zoo.
    columns : tuple of str
        Metadata columns to include (those the zoo lacks are left out).
    path : path, optional
        Write the dataset to this Arrow file in budget-sized blocks and memory-map it
        (``datasets.Dataset.from_file``), so the process never holds the zoo.  Needed when
        the zoo exceeds the handle's memory budget; without it a zoo that fits is built in
        memory from its decoded block, as before.

    Raises
    ------
    QueryError
        The ``datasets`` package is not installed; the zoo exceeds the memory budget and no
        ``path`` is given; ``path`` lies inside the lake.
    """
    try:
        import datasets
    except ModuleNotFoundError:
        raise QueryError("zoo_to_hf() needs the datasets package: pip install 'weightlake[hf]'") from None

    zoo = zoo or lake._only_zoo()
    if path is None and not lake.fits(zoo):
        from weightlake.storage.budget import format_memory

        raise QueryError(f"zoo {zoo!r} holds {format_memory(lake.zoo_bytes(zoo))} of weights, more than the memory "
                         f"budget ({format_memory(lake.memory)}); pass path=... to write the dataset to an Arrow "
                         "file in blocks and memory-map it, or raise WEIGHTLAKE_MEMORY")
    meta = lake.models(zoo).collect()
    meta = meta.sort("model_id").select([c for c in columns if c in meta.columns])
    if path is None:
        ids, rows = lake.zoo_weights(zoo)
        table = _with_weights(_aligned(meta, ids), rows)
        return datasets.Dataset(table).with_format("torch")
    target = lake.check_output(path)
    _write_blocks(lake, zoo, meta, target)
    return datasets.Dataset.from_file(str(target)).with_format("torch")


def _aligned(meta: Any, ids: np.ndarray) -> Any:
    """Metadata rows in the order of ``ids`` (every id must have a row)."""
    known = meta["model_id"].to_numpy()
    pos = np.searchsorted(known, ids)
    if len(ids) and (pos.max() >= len(known) or (known[np.minimum(pos, len(known) - 1)] != ids).any()):
        raise QueryError("the zoo's metadata and weights list different models; run `weightlake verify`")
    return meta[pos]


def _with_weights(meta: Any, rows: np.ndarray) -> Any:
    import pyarrow as pa

    flat = np.ascontiguousarray(rows, dtype=np.float32)
    weights = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
    return meta.to_arrow().append_column("weights", weights)


def _write_blocks(lake: Any, zoo: str, meta: Any, target: Any) -> None:
    """The dataset as an Arrow stream file, one record batch per streamed block (written to a temp name first)."""
    import pyarrow as pa

    tmp = target.with_name(f".{target.name}.partial")
    writer = None
    try:
        with pa.OSFile(str(tmp), "wb") as sink:
            for ids, block in lake.iter_weights(zoo):
                table = _with_weights(_aligned(meta, ids), block)
                if writer is None:
                    writer = pa.ipc.new_stream(sink, table.schema)
                writer.write_table(table)
            if writer is None:
                raise QueryError(f"zoo {zoo!r} holds no models")
            writer.close()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
