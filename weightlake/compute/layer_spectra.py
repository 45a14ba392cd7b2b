"""Spectra of wide zoos, layer by layer: each conv and linear layer read alone, in budget-sized blocks.

For a zoo stored in the ``tensors`` layout (models wider than 32,768 values, e.g. ResNet-18)
reading whole rows to analyse one layer at a time would read the zoo once per block of rows
and hold whole rows; here each layer of a block of models is read by itself
(:meth:`~weightlake.lake.Lake.layer`: only that tensor's chunks), turned into matrices
(conv ``[out, in, kh, kw]`` -> ``out x in*kh*kw``, as for CNN-s, see
:func:`weightlake.analysis.spectra.skipped_layers`) and handed to the pure
:func:`~weightlake.analysis.spectra.layer_spectra`.  Memory holds one block of one layer: at
most ``budget / (8 x workers)`` as float32 per worker thread (two threads on two cores:
``eigh`` releases the GIL).  Batch-norm layers are skipped and the reason recorded in the table's parameters.

The result is the ``spectra`` table, row for row what the whole-row path computes on the same
models (tested), committed as every analysis table is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.errors import QueryError

BLOCK_MODELS = 512
"""Most models per decomposed block of one layer (fewer when the budget asks for it)."""
BLOCK_SHARE = 8
"""A block of one layer takes at most ``budget / (BLOCK_SHARE x workers)`` as float32: its float64
copy and Gram matrices take several times that while it is decomposed."""


def analyze_layer_spectra(lake_root: Path | str, *, zoo: str | None = None, layers: Sequence[str] | None = None,
                          all_rows: bool = False, progress: Callable[[int, int], Any] | None = None,
                          memory: str | int | None = None) -> Any:
    """Per-layer spectra of every conv2d and linear layer -> table ``spectra``, read layer by layer.

    Distinct models only unless ``all_rows`` (as :func:`weightlake.compute.analyses.analyze_spectra`).
    ``progress(done, total)`` counts (layer, model) pairs.

    Raises
    ------
    QueryError
        For a layer name the architecture does not have, or a layer holding a NaN or an infinity
        (the models and the layer named, as the whole-row path names them; a batch-norm vector,
        which no spectrum reads, is not checked here).
    """
    from weightlake.analysis._rows import default_workers
    from weightlake.analysis.spectra import layer_spectra_frame, single_threaded_torch, skipped_layers
    from weightlake.compute.analyses import AnalysisReport, _commit, _selection, _zoo_meta, refuse_non_finite
    from weightlake.lake import open_lake
    from weightlake.storage.budget import block_rows

    started = time.perf_counter()
    lake = open_lake(lake_root, memory=memory)
    zoo, ids, meta = _zoo_meta(lake, zoo)
    keep, models, note = _selection(meta, all_rows)
    arch = lake.arch(zoo)
    unknown = [name for name in layers or () if name not in arch.layer_names]
    if unknown:
        raise QueryError(f"zoo {zoo!r} has no layer {unknown[0]!r}; layers: {', '.join(arch.layer_names[:8])} ...")
    skipped = skipped_layers(arch, layers)
    names = [name for name in dict.fromkeys(layers or arch.matrix_layer_names) if name not in skipped]
    kept = ids[keep]
    workers = default_workers()
    tasks = []
    for name in names:
        layer = arch.matrix_layer(name)
        # float32 block + float64 copies and Gram matrices per worker: a 1/(8 x workers) share of the budget each
        step = max(1, min(BLOCK_MODELS, block_rows(layer.weight_size, lake.memory, share=BLOCK_SHARE * workers)))
        tasks += [(layer, kept[start:start + step]) for start in range(0, len(kept), step)]

    def run(task: tuple[Any, np.ndarray]) -> pl.DataFrame:
        layer, block = task
        weights = lake.layer(block, layer.weight_key or layer.name).numpy()
        refuse_non_finite(zoo, block, weights.reshape(len(block), -1), layer=layer.name)
        part = layer_spectra_frame(arch.weight_to_matrix(layer, weights), layer.name, arch.matrix_layer_names)
        return part.with_columns(model_id=pl.Series(block)[part["row"]]).drop("row")

    frames, done, total = [], 0, len(names) * len(kept)
    with single_threaded_torch(), ThreadPoolExecutor(max_workers=workers) as pool:  # eigh releases the GIL
        try:
            for (_, block), frame in zip(tasks, pool.map(run, tasks), strict=True):
                frames.append(frame)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        except BaseException:  # a refused block: the blocks still queued are not decomposed first
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    if not frames:  # no layer or no model: the schema still
        empty = np.empty((0, *arch.matrix_layers[0].matrix_shape), dtype=np.float32)
        frames.append(layer_spectra_frame(empty, arch.matrix_layer_names[0], arch.matrix_layer_names)
                      .with_columns(model_id=pl.lit(None, dtype=pl.Int64)).drop("row"))
    table = (pl.concat(frames).sort("model_id", "layer", maintain_order=True)
             .with_columns(layer=pl.col("layer").cast(pl.String), snapshot=pl.lit(lake.snapshot, dtype=pl.Int64)))
    table = table.select("model_id", "layer", pl.exclude("model_id", "layer"))
    params: dict[str, Any] = {"layers": list(layers or []), "models": models, "read": "per layer",
                              "conv_matrix": "out x in*kh*kw", "skipped": skipped}
    version = _commit(Path(lake_root), "spectra", table, zoo, params, lake.snapshot)
    notes = [note, f"{len(names)} conv/linear layers; {len(skipped)} skipped (batch norms are vectors)"]
    return AnalysisReport("spectra", zoo, table.height, version, time.perf_counter() - started, notes=notes,
                          n_models=int(keep.sum()))


def per_layer(lake: Any, zoo: str) -> bool:
    """True when ``zoo`` is stored in the ``tensors`` layout (its spectra are read layer by layer)."""
    return any(seg.layout == "tensors" for seg in lake.manifest.zoo(zoo).segments)
