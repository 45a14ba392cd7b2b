"""A zoo as a Hugging Face ``datasets.Dataset``, for users of that ecosystem (the ``hf`` extra).

:func:`zoo_to_hf` gives one row per model: its metadata columns and ``weights`` (float32, P
values), in torch format; a pair set has :meth:`~weightlake.serve.pairset.PairSet.to_hf`.
The weights column is built on the zoo's decoded block through Arrow (no per-row Python).
Round-trip law: ``ds[i]["weights"]`` equals ``lake.weights_numpy([ds[i]["model_id"]])[0]`` bitwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from weightlake.errors import QueryError

META_COLUMNS: tuple[str, ...] = ("model_id", "init", "activation", "epoch", "classes", "n_classes", "class_mask",
                                 "accuracy")
"""Metadata columns carried beside the weights (those a zoo has)."""


def zoo_to_hf(lake: Any, zoo: str | None = None, *, columns: tuple[str, ...] = META_COLUMNS) -> Any:
    """A zoo's models as a ``datasets.Dataset`` in torch format, ordered by ``model_id``.

    Parameters
    ----------
    lake : Lake
    zoo : str, optional
        Default: the lake's only zoo.
    columns : tuple of str
        Metadata columns to include (those the zoo lacks are left out).

    Raises
    ------
    QueryError
        The ``datasets`` package is not installed.
    """
    try:
        import datasets
    except ModuleNotFoundError:
        raise QueryError("zoo_to_hf() needs the datasets package: pip install 'weightlake[hf]'") from None
    import pyarrow as pa

    zoo = zoo or lake._only_zoo()
    ids, rows = lake.zoo_weights(zoo)
    meta = lake.models(zoo).collect()
    order = {int(m): i for i, m in enumerate(meta["model_id"].to_list())}
    meta = meta[[order[int(i)] for i in ids]].select([c for c in columns if c in meta.columns])
    flat = np.ascontiguousarray(rows, dtype=np.float32)
    weights = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
    table = meta.to_arrow().append_column("weights", weights)
    return datasets.Dataset(table).with_format("torch")
