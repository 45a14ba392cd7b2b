"""DuckDB over a pinned snapshot: views, UDFs, parameter binding and named queries.

Views every connection sees:

* ``models``  — model metadata of every zoo (Hive-partitioned Parquet, listed files only);
* ``weights`` — ``model_id BIGINT, zoo VARCHAR, w FLOAT[P]`` served zero-copy from the decoded
  Zarr segments as an Arrow table (nothing re-encoded as Parquet), or streamed block by
  block when the zoos exceed the handle's memory budget (:class:`StreamedWeights`);
* ``weights_<layer>`` — ``model_id BIGINT, zoo VARCHAR, w FLOAT[L]``: one layer's block (weight
  and bias, as the ``wl_*_layer`` functions take it) of every model, one view per layer the
  zoos share (``weights_fc1``; a dotted name such as ``layer1.0.conv1`` becomes
  ``weights_layer1_0_conv1``), so per-layer metrics are the whole-vector macros over it
  (:class:`LayerWeights`);
* one view per derived table (``pairs``, ``scenarios``, ``spectra`` ...; a derived table of the
  same name as a layer view wins);
* ``wl_*`` functions (analysis metrics and per-layer extraction) when the analysis
  package is importable.

Named queries live in ``queries/*.sql`` with a header of ``-- name:``,
``-- description:`` and ``-- param: NAME TYPE [= DEFAULT]  description`` lines; their
parameters are bound with DuckDB's ``$name`` placeholders, never pasted into SQL text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from weightlake.errors import NoSuchTableError, QueryError
from weightlake.storage import tables

if TYPE_CHECKING:
    import duckdb

    from weightlake.lake import Lake

_WORD = re.compile(r"\bweights\b", re.IGNORECASE)
_LAYER_VIEW = re.compile(r"\bweights_\w+", re.IGNORECASE)
_FUNCTION = re.compile(r"\bwl_\w+", re.IGNORECASE)
_NAME = re.compile(r"[\w-]+")  # a quoted table name may hold dashes
_WORDS = re.compile(r"\w+")
_CATALOGUE = re.compile(r"\b(show|describe|summarize|information_schema|duckdb_\w+|pragma)\b", re.IGNORECASE)


def connect(lake: Lake, *, weights: bool = True, udfs: bool | Collection[str] = True,
            views: bool | Collection[str] = True, layers: bool | Collection[str] | None = None,
            zoo: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose views read ``lake``'s pinned snapshot.

    ``udfs``: register every ``wl_*`` function (True), none (False), or only the named ones.
    ``views``: every derived table's view (True), none, or only the named ones (``models``
    is always there).  ``layers``: the ``weights_<layer>`` views, all (True), none, or the named
    ones (default: all when ``weights``); registering one costs nothing until a query scans it.
    In a lake whose zoos do not line up (:meth:`~weightlake.lake.Lake.check_aligned`) every scan of
    ``weights`` raises why; the other views work.
    ``zoo``: the ``weights`` and ``weights_<layer>`` views hold only that zoo's models (``models``
    and the derived tables stay whole), so one zoo's weights can be asked in a lake whose zoos
    are of several architectures (:func:`run_named` passes a named query's ``zoo`` parameter).

    The connection cannot touch the file system: every view is data handed over from
    Python (checked Parquet files as Arrow datasets, weights as an Arrow table), then
    DuckDB's ``enable_external_access`` is switched off and the configuration locked. So no
    statement (``COPY ... TO``, ``ATTACH``, ``EXPORT``, ``INSTALL``) can create, change or
    delete a file, in the lake or anywhere else; results leave through Python (``--output``).
    """
    import duckdb

    con = duckdb.connect()
    try:
        if con.execute("SELECT current_setting('enable_progress_bar')").fetchall()[0][0]:
            # its bar would land in --format csv output; inside Jupyter without ipywidgets DuckDB
            # keeps it off already and refuses the SET, so only switch off what is on
            con.execute("SET enable_progress_bar = false")
        _create_views(con, lake, weights=weights, views=views, layers=weights if layers is None else layers,
                      zoo=zoo)
        if udfs:
            from weightlake.analysis.udfs import register_udfs

            # the vector forms (wl_mse_layer(a.w, b.w, 'fc1'), wl_layer ...) take the architecture of the
            # zoo the weight views hold, not the lake's first one
            arch = lake.arch(zoo) if zoo is not None else None
            register_udfs(con, lake, arch=arch, only=None if udfs is True else {str(n).lower() for n in udfs})
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _create_views(con: duckdb.DuckDBPyConnection, lake: Lake, *, weights: bool,
                  views: bool | Collection[str] = True, layers: bool | Collection[str] = False,
                  zoo: str | None = None) -> None:
    from weightlake.storage.transaction import MODEL_PARTITIONS

    files = [f for e in lake.manifest.zoos.values() for f in e.model_files]
    fs = lake.location.arrow_filesystem()  # None on local disk; pyarrow's S3 filesystem for s3:// lakes
    held = lake if zoo is None or not (weights or layers) else scoped(lake, zoo)  # whose zoos the weight views hold
    w = _weights_or_refusal(held) if weights and held.manifest.zoos else None
    spans = layer_views(held) if layers else {}
    if layers is not True:
        spans = {k: v for k, v in spans.items() if k in {str(n).lower() for n in layers or ()}}
    # beside a streamed `weights` (which DuckDB cannot size), every view is handed over unsized too
    streamed = isinstance(w, StreamedWeights) or (bool(spans) and not held.fits())
    register = _register_unsized if streamed else _register
    if files:
        if fs is None:
            register(con, "models", models_arrow(lake.checked_paths(files), MODEL_PARTITIONS))
        else:
            register(con, "models", tables.arrow_dataset(lake.root / "models", lake.checked_paths(files),
                                                         MODEL_PARTITIONS, _string_types(MODEL_PARTITIONS), fs))
    wanted = None if views is True else set() if views is False else {str(v).lower() for v in views}
    derived = {name.lower() for name in lake.manifest.tables}
    for name, (start, stop) in spans.items():
        if name not in derived:
            con.register(name, LayerWeights(held, start, stop))
    for name, entry in lake.manifest.tables.items():
        if entry.files and (wanted is None or name.lower() in wanted):
            part = tuple(entry.properties.get("partition_by", ()))
            base = lake.root / "tables" / tables.partition_value(name)
            register(con, name, tables.arrow_dataset(base, lake.checked_paths(entry.files), part, filesystem=fs))
    if w is not None:
        con.register("weights", w)


def scoped(lake: Lake, zoo: str) -> Lake:
    """A handle on the same snapshot that holds only ``zoo`` (for the weight views of :func:`connect`).

    It shares ``lake``'s decoded zoos, row sources and checked files (all keyed by zoo or file,
    not by which zoos a handle lists), so a zoo decoded on ``lake`` is not decoded again.
    """
    from dataclasses import replace

    entry = lake.manifest.zoo(zoo)  # raises, naming the zoos
    out = type(lake)(lake.root, replace(lake.manifest, zoos={zoo: entry}), location=lake.location,
                     memory=lake.memory)
    out._cache, out._sources, out._verified, out._lock = lake._cache, lake._sources, lake._verified, lake._lock
    return out


def _weights_or_refusal(lake: Lake) -> Any:
    """The `weights` source, or in a lake whose zoos do not line up a stand-in whose every scan
    raises the reason (the connection still serves `models`, the tables and the layer views)."""
    try:
        return weights_arrow(lake)
    except QueryError as exc:
        return _Refusing(str(exc))


class _Refusing:
    """A `weights` view that cannot be served: it has the view's columns, and a scan raises ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        import pyarrow as pa

        def refuse() -> Any:
            raise QueryError(self.reason)
            yield  # a generator: DuckDB reads the schema at registration, the batches only when scanning

        schema = pa.schema([("model_id", pa.int64()), ("zoo", pa.string()), ("w", pa.list_(pa.float32()))])
        return pa.RecordBatchReader.from_batches(schema, refuse()).__arrow_c_stream__(requested_schema)


def _register(con: duckdb.DuckDBPyConnection, name: str, source: Any) -> None:
    con.register(name, source)


def _register_unsized(con: duckdb.DuckDBPyConnection, name: str, source: Any) -> None:
    """Register ``source`` as a stream DuckDB reopens per scan and cannot count.

    DuckDB builds a join's hash table on the side it estimates smaller. It cannot count a
    streamed `weights` view (it estimates "~1 row"), so beside a counted `models` it would
    build the table on `weights`: a copy of the whole zoo in memory (11 GB at a million CNN-s
    models). With every side unsized the estimates tie, and DuckDB builds on the narrower
    side (the metadata), streaming the weights through the probe. Views lose filter pushdown
    into their files here; over the budget the weights scan dominates anyway.
    """
    con.register(name, _Unsized(source))


class _Unsized:
    """An Arrow table or dataset seen through ``__arrow_c_stream__`` only (no row count)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        source = self.source.scanner().to_reader() if hasattr(self.source, "scanner") else self.source
        return source.__arrow_c_stream__(requested_schema)


def models_arrow(paths: Sequence[str], partition_by: Sequence[str]) -> Any:
    """The model metadata files as one Arrow table, partition columns (strings) last.

    Read with polars, not as a pyarrow dataset: ``pyarrow.dataset`` imports pandas (1.5 s of a
    cold ``weightlake sql``), and the metadata is small (about 100 bytes a model). Schemas are
    unified by name, as :func:`weightlake.storage.tables.arrow_dataset` does: a column added
    in a later commit reads as null in earlier files.
    """
    frames = []
    for path in paths:
        with open(path, "rb") as fh:  # a file object: no glob expansion of a path holding '*', '?' or '['
            frame = pl.read_parquet(fh)
        parts = {c: tables._partition_of(path, c) for c in partition_by}
        frames.append(frame.with_columns(pl.lit(v, dtype=pl.String).alias(c) for c, v in parts.items()))
    merged = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    rest = [c for c in merged.columns if c not in partition_by]
    return merged.select(*rest, *partition_by).to_arrow()


def _string_types(columns: Sequence[str]) -> dict[str, Any]:
    import pyarrow as pa

    return {c: pa.string() for c in columns}


def one_statement(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    """The one SQL statement of ``query``; refuse a call that holds more than one (or none)."""
    import duckdb

    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {_first_line(exc)}") from exc
    if len(statements) != 1:
        raise QueryError(f"give one SQL statement per call (got {len(statements)}); run them one at a time")
    return statements[0]


READ_STATEMENTS = ("SELECT", "EXPLAIN", "PRAGMA", "CALL", "MULTI")
"""Statement kinds :func:`run_sql` runs: those that read (``MULTI`` is a ``PIVOT``; a ``PRAGMA`` or ``CALL``
that would change a setting is refused by the locked configuration, one that would read a file by the
disabled file system)."""

_KIND_WORDS = {"TRANSACTION": "BEGIN, COMMIT and ROLLBACK", "SET": "SET, RESET and USE", "LOAD": "LOAD and INSTALL",
               "DELETE": "DELETE and TRUNCATE", "VACUUM": "VACUUM and ANALYZE", "MERGE_INTO": "MERGE INTO"}


def check_reads(statement: Any) -> None:
    """Refuse a statement that would change something: the lake is read-only through SQL, and each call
    runs on its own in-memory connection, so a view, table, macro or transaction made by one would vanish
    with it while the call seemed to succeed (``CREATE VIEW`` printed an empty ``Count`` table, exit 0)."""
    kind = statement.type.name
    if kind in READ_STATEMENTS:
        return
    words = _KIND_WORDS.get(kind, kind.replace("_", " "))
    if kind in ("COPY", "EXPORT"):
        how = "write a result with --output / lake.sql(...).write_*"
    else:
        how = ("each call is its own in-memory connection, so what it made would vanish with it: keep a query "
               "as a named query (queries/*.sql, `weightlake query run`), or make views on lake.connect() in Python")
    raise QueryError(f"{words} statements are refused: weightlake SQL only reads the lake "
                     f"(SELECT, EXPLAIN, PRAGMA, CALL) and changes nothing; {how}")


def weights_arrow(lake: Lake) -> Any:
    """All zoos' weights ``(model_id, zoo, w FLOAT[P])`` for DuckDB.

    When every zoo fits the handle's memory budget (:meth:`Lake.fits`): an Arrow table,
    zero-copy over the decoded rows (decoded once per handle, any number of scans).
    Otherwise a :class:`StreamedWeights` source: each scan streams the zoos in budget-sized
    blocks, so a query scanning ``weights`` twice (a self-join) reads the zoo twice.

    Zoos whose vectors do not line up (other architectures, of any parameter count) cannot share
    one column: a metric over ``a.w, b.w`` would compare unrelated parameters. They are refused.
    """
    check_one_layout(lake, "the `weights` view would")
    widths = {e.segments[0].cols for e in lake.manifest.zoos.values() if e.segments}
    if not lake.fits():
        return StreamedWeights(lake)
    import pyarrow as pa

    batches = [_weights_batch(zoo, *lake.zoo_weights(zoo)) for zoo in lake.zoos if lake.manifest.zoo(zoo).n_models]
    return pa.Table.from_batches(batches, schema=_weights_schema(widths.pop() if widths else 0))


def check_one_layout(lake: Lake, what: str) -> None:
    """Refuse ``what`` over a lake whose zoos' vectors do not line up, naming the zoos, their
    architectures and what can be asked instead."""
    from weightlake.errors import ArchitectureError

    try:
        lake.check_aligned([z for z in lake.zoos if lake.manifest.zoo(z).n_models], what)
    except ArchitectureError as exc:
        raise QueryError(f"{exc.args[0].removesuffix('; ask one zoo at a time')}, so one column would "
                         "compare unrelated parameters; ask by model id (wl_mse_by_id(a.model_id, b.model_id) over "
                         "`models`), over a weights_<layer> view the zoos share, or one zoo (sql --zoo NAME, "
                         "lake.sql(query, zoo=NAME), a named query's --param zoo=NAME)") from exc


def _weights_schema(cols: int) -> Any:
    import pyarrow as pa

    return pa.schema([("model_id", pa.int64()), ("zoo", pa.string()), ("w", pa.list_(pa.float32(), cols))])


def _weights_batch(zoo: str, ids: Any, rows: Any) -> Any:
    """One record batch over ``rows`` without copying them (Arrow keeps the numpy buffer alive)."""
    import pyarrow as pa

    return pa.record_batch([pa.array(ids, type=pa.int64()), pa.array([zoo] * len(ids), type=pa.string()),
                            pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), rows.shape[1])],
                           schema=_weights_schema(rows.shape[1]))


def _layer_hint(lake: Lake, exc: BaseException) -> str:
    """Why a ``weights_<layer>`` view the query names is not there: which zoos hold that layer, where."""
    from weightlake.errors import WeightLakeError

    found = re.search(r"Table with name (weights_\w+) does not exist", str(exc))
    if not found or found.group(1).lower() in {n.lower() for n in lake.manifest.tables}:
        return ""
    name, where = found.group(1).lower(), []
    for zoo in lake.zoos:
        try:
            layers = lake.arch(zoo).layers
        except WeightLakeError:
            continue
        where += [f"zoo {zoo!r} at columns {layer.start}-{layer.stop} ({_shape(layer.weight_shape)})"
                  for layer in layers
                  if _layer_view_name(layer.name) == name]
    offered = sorted(layer_views(lake)) or "none"
    if not where:
        return f" (no zoo has a layer of that view; layer views: {offered})"
    return (f" (a layer view needs the layer in every zoo at the same columns, of one shape: {', '.join(where)}"
            f"{'' if len(where) == len(lake.zoos) else ', absent from the other zoos'}; layer views: {offered})")


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _layer_view_name(layer: str) -> str:
    return "weights_" + re.sub(r"\W", "_", layer).lower()


def layer_views(lake: Lake) -> dict[str, tuple[int, int]]:
    """``weights_<layer>`` view name -> the layer's ``(start, stop)`` columns, for every layer all zoos
    share by name, span and shapes (a name two layers would share is offered for neither; Linear(36, 20)
    and Linear(73, 10) both span 740 columns, which do not line up)."""
    from collections import Counter

    from weightlake.errors import WeightLakeError

    spans: dict[str, tuple[int, int, tuple[int, ...], tuple[int, ...]]] | None = None
    for zoo in lake.zoos:
        try:
            layers = lake.arch(zoo).layers
        except WeightLakeError:  # an architecture this build does not know: no layers to offer
            return {}
        names = [_layer_view_name(layer.name) for layer in layers]
        count = Counter(names)
        mine = {n: (layer.start, layer.stop, layer.weight_shape, layer.bias_shape)
                for n, layer in zip(names, layers, strict=True) if count[n] == 1}
        spans = mine if spans is None else {k: v for k, v in spans.items() if mine.get(k) == v}
    return {k: v[:2] for k, v in (spans or {}).items()}


class LayerWeights:
    """A ``weights_<layer>`` view: ``(model_id, zoo, w FLOAT[L])`` with ``w`` the columns
    ``start:stop`` of every model, made afresh for each scan as an Arrow C stream.

    Each 2,048-row block is a contiguous copy of the layer's columns (from the decoded zoo
    when it fits the handle's budget, else from :meth:`Lake.iter_weights` blocks, or for a
    ``tensors``-layout zoo from that layer's chunks alone), so DuckDB's
    native array functions (the ``wl_mse`` ... macros) run over it directly: a slice of a
    ``FLOAT[P]`` value inside DuckDB, or a Python UDF taking one, costs 3-7x the metric
    (BENCHMARKS.md, "Per-layer SQL functions").  Registering it costs nothing; a scan holds
    about one block; like :class:`StreamedWeights` it has no row count and no filter pushdown.
    """

    block_rows = 2048

    def __init__(self, lake: Lake, start: int, stop: int) -> None:
        self.lake, self.start, self.stop = lake, start, stop
        self.schema = _weights_schema(stop - start)

    def batches(self) -> Any:
        import numpy as np

        fits = self.lake.fits()
        for zoo in self.lake.zoos:
            if not self.lake.manifest.zoo(zoo).n_models:
                continue
            segments = self.lake.manifest.zoo(zoo).segments
            if not fits and f"zoo:{zoo}" not in self.lake._cache and all(s.parts for s in segments):
                source = self.lake.row_source(zoo)  # tensors layout over the budget: only the layer's chunks
                if hasattr(source, "take_columns"):
                    yield from self._layer_chunks(zoo, source)
                    continue
            blocks = [self.lake.zoo_weights(zoo)] if fits else self.lake.iter_weights(zoo)
            for ids, rows in blocks:
                for i in range(0, len(ids), self.block_rows):
                    part = np.ascontiguousarray(rows[i:i + self.block_rows, self.start:self.stop])
                    yield _weights_batch(zoo, ids[i:i + self.block_rows], part)

    def _layer_chunks(self, zoo: str, source: Any) -> Any:
        """Blocks of a ``tensors``-layout zoo read by :meth:`~weightlake.storage.parts.PartRows.take_columns`:
        a whole number of the largest overlapping tensor's chunks (so none is read twice), as
        many as :attr:`block_rows` rows and a quarter of the budget allow, at least one."""
        import numpy as np

        from weightlake.storage.budget import block_rows

        overlapping = [p for s in source.segments for p in s.parts
                       if p.start < self.stop and p.start + p.size > self.start and p.size]
        chunk = max(overlapping, key=lambda p: p.size).chunk_rows if overlapping else 1
        # a chunk is read (and checked) whole anyway: a block smaller than one would read it twice
        step = min(block_rows(self.stop - self.start, self.lake.memory, chunk), self.block_rows)
        step = max(chunk, step - step % chunk)
        for i in range(0, len(source.ids), step):
            pos = np.arange(i, min(i + step, len(source.ids)), dtype=np.int64)
            yield _weights_batch(zoo, source.ids[pos], source.take_columns(pos, self.start, self.stop))

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        import pyarrow as pa

        reader = pa.RecordBatchReader.from_batches(self.schema, self.batches())
        return reader.__arrow_c_stream__(requested_schema)


class StreamedWeights:
    """The ``weights`` view of a lake too big for its budget: an Arrow C stream that DuckDB
    opens afresh for every scan (``__arrow_c_stream__``), reading the zoos block by block
    (:meth:`Lake.iter_weights`, every chunk checked) and holding about one block at a time.

    Costs: no filter pushdown (``WHERE model_id = 5`` still reads the whole zoo), and each
    scan of ``weights`` in one statement reads the zoo again.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        widths = {e.segments[0].cols for e in lake.manifest.zoos.values() if e.segments}
        self.schema = _weights_schema(widths.pop() if widths else 0)

    def batches(self) -> Any:
        for zoo in self.lake.zoos:
            for ids, rows in self.lake.iter_weights(zoo):
                yield _weights_batch(zoo, ids, rows)

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        import pyarrow as pa

        reader = pa.RecordBatchReader.from_batches(self.schema, self.batches())
        return reader.__arrow_c_stream__(requested_schema)


def run_sql(lake: Lake, query: str, params: Mapping[str, Any] | Sequence[Any] | None = None, *,
            zoo: str | None = None) -> pl.DataFrame:
    """Run one query; the ``weights`` view is decoded only if the query names it (``zoo``: see :func:`connect`)."""
    import duckdb

    # register only the wl_* functions and derived tables the query names (none for a plain query:
    # no metrics import, no pyarrow.dataset import); a query listing the catalogue gets every view
    catalogue = bool(_CATALOGUE.search(query))
    views = True if catalogue else {w.lower() for w in _NAME.findall(query) + _WORDS.findall(query)}
    layers = True if catalogue else {m.lower() for m in _LAYER_VIEW.findall(query)}
    functions = {m.lower() for m in _FUNCTION.findall(query)}
    uses_weights = bool(_WORD.search(query))
    if zoo is not None:
        lake.manifest.zoo(zoo)  # an unknown zoo is refused, naming the zoos, whatever the query reads
    elif uses_weights:  # refused here in one line, not by DuckDB at the first scan
        check_one_layout(lake, "the `weights` view would")
    con = connect(lake, weights=uses_weights, udfs=functions, views=views, layers=layers, zoo=zoo)
    try:
        check_reads(one_statement(con, query))
        with python_functions_scope(lake, bool(functions)):
            rel = con.sql(query, params=params) if params else con.sql(query)
            if rel is None:  # a statement with no result (a PRAGMA or CALL that returns none)
                return pl.DataFrame()
            table = rel.to_arrow_table()
        _check_names(table.column_names)
        return pl.from_arrow(table)  # type: ignore[return-value]
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {_first_line(exc)}{_hint(exc)}{_layer_hint(lake, exc)}"
                         f"{_missing_table_hint(lake, exc)}") from exc
    finally:
        con.close()


def _check_names(names: Sequence[str]) -> None:
    """A result is a polars frame, whose columns need distinct names (DuckDB keeps ``a.zoo, b.zoo`` as two ``zoo``)."""
    from collections import Counter

    twice = [name for name, n in Counter(names).items() if n > 1]
    if twice:
        raise QueryError(f"the result has {len(names)} columns but names {twice} more than once: name each "
                         f"with AS (SELECT a.{twice[0]} AS {twice[0]}_a, b.{twice[0]} AS {twice[0]}_b ...)")


def python_functions_scope(lake: Lake, names_functions: bool) -> Any:
    """The heap kept during a query that names a ``wl_*`` function (:func:`weightlake._heap.heap_kept`:
    DuckDB's argument buffers for Python functions then reuse heap pages instead of faulting in
    new ones: ``wl_mse_layer(w, w, ...)`` 1.6-2.4x faster). When the lake fits the budget its zoos
    are decoded before it, so the handle's long-lived copies are not placed in the heap."""
    import contextlib

    from weightlake._heap import heap_kept

    if not names_functions:
        return contextlib.nullcontext(False)
    if lake.fits():
        for zoo in lake.zoos:
            if lake.manifest.zoo(zoo).n_models:
                lake.zoo_weights(zoo)
    return heap_kept()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _missing_table_hint(lake: Lake, exc: BaseException) -> str:
    """What the snapshot read holds, when a query names a table it lacks (``--snapshot 0`` holds no zoo
    yet, so no ``models``: DuckDB's "Table with name models does not exist!" alone did not say why)."""
    import re

    if not re.search(r"Table with name \S+ does not exist", str(exc)):
        return ""
    views = [*(["models", "weights"] if lake.manifest.zoos else []), *sorted(lake.manifest.tables)]
    held = f"has the views {', '.join(views)}" if views else "holds no zoo and no table yet"
    return f" (snapshot {lake.snapshot} {held}; `weightlake history` says what each snapshot committed)"


def _hint(exc: BaseException) -> str:
    if "file system operations are disabled" in str(exc) or "external access" in str(exc):
        return (" (weightlake SQL reads the lake's views and cannot read or write files: write a result with "
                "--output / lake.sql(...).write_*, read your own file in Python and join it there)")
    return ""


# -- named queries ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    description: str

    def parse(self, text: str) -> Any:
        try:
            if self.type in ("int", "integer"):
                return int(text)
            if self.type in ("float", "double"):
                return float(text)
            if self.type in ("bool", "boolean"):
                return text.lower() in ("1", "true", "yes")
            return text
        except ValueError:
            raise QueryError(f"parameter {self.name!r} expects {self.type}, got {text!r}") from None


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[Param, ...]
    sql: str
    path: Path
    requires: tuple[str, ...] = field(default=())

    def bind(self, given: Mapping[str, str]) -> dict[str, Any]:
        unknown = set(given) - {p.name for p in self.params}
        if unknown:
            raise QueryError(f"query {self.name!r} has no parameter(s) {sorted(unknown)}; "
                             f"it takes {[p.name for p in self.params]}")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = p.parse(given[p.name])
            elif p.default is not None:
                out[p.name] = None if p.default == "null" else p.parse(p.default)
            else:
                raise QueryError(f"query {self.name!r} needs --param {p.name}=... ({p.type}: {p.description})")
        return out


_HEADER = re.compile(r"^--\s*(name|description|param|requires)\s*:\s*(.*)$")
_PARAM = re.compile(r"^(\w+)\s+(\w+)(?:\s*=\s*(\S+))?\s*(.*)$")


def parse_named_query(path: Path) -> NamedQuery:
    text = path.read_text()
    meta: dict[str, Any] = {"param": [], "requires": []}
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        m = _HEADER.match(line)
        if m:
            key, value = m.group(1), m.group(2).strip()
            if key in ("param", "requires"):
                meta[key].append(value)
            else:
                meta[key] = value
    if "name" not in meta:
        raise QueryError(f"{str(path)!r} lacks a '-- name:' header line")
    params = []
    for spec in meta["param"]:
        pm = _PARAM.match(spec)
        if not pm:
            raise QueryError(f"{str(path)!r}: cannot read parameter line {spec!r}; "
                             "expected '-- param: NAME TYPE [= DEFAULT] description'")
        params.append(Param(pm.group(1), pm.group(2).lower(), pm.group(3), pm.group(4)))
    return NamedQuery(meta["name"], meta.get("description", ""), tuple(params), text, path,
                      tuple(t.strip() for r in meta["requires"] for t in r.split(",") if t.strip()))


def query_dirs(lake: Lake | None = None) -> list[Path]:
    """Where named queries are looked up: ``$WEIGHTLAKE_QUERIES``, the project's ``queries/``, ``<lake>/queries``."""
    dirs = [Path(p) for p in os.environ.get("WEIGHTLAKE_QUERIES", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parent.parent / "queries")
    if lake is not None and lake.location.is_local:  # queries kept beside a local lake
        dirs.append(lake.root / "queries")
    return [d for d in dirs if d.is_dir()]


def named_queries(lake: Lake | None = None) -> dict[str, NamedQuery]:
    out: dict[str, NamedQuery] = {}
    for d in query_dirs(lake):
        for path in sorted(d.glob("*.sql")):
            q = parse_named_query(path)
            out.setdefault(q.name, q)
    return out


def run_named(lake: Lake, name: str, given: Mapping[str, str]) -> pl.DataFrame:
    queries = named_queries(lake)
    if name not in queries:
        raise NoSuchTableError(f"no named query {name!r}; available: {sorted(queries) or 'none'}")
    query = queries[name]
    missing = [t for t in query.requires if t not in lake.manifest.tables and t not in ("models", "weights")]
    if missing:
        raise QueryError(f"query {name!r} reads table(s) {missing}, which this lake does not have yet; "
                         "see `weightlake query list` for how each is produced")
    bound = query.bind(given)
    _check_zoo_param(lake, query, bound)
    _check_scenario_param(lake, query, bound)
    return run_sql(lake, query.sql, bound, zoo=_one_zoo(lake, bound))


def _check_scenario_param(lake: Lake, query: NamedQuery, bound: Mapping[str, Any]) -> None:
    """Refuse a ``scenario`` parameter that no table the query reads holds (as for ``zoo``): a mistyped
    scenario gave an empty table. Scenarios are looked up in the ``scenario`` column of the tables in
    its ``requires`` (evaluations may name scenarios ingested from tracking files, not declared) and
    in ``scenarios``."""
    scenario = bound.get("scenario")
    default = next((p.default for p in query.params if p.name == "scenario"), None)
    tables = [t for t in query.requires if t in lake.manifest.tables]
    if not isinstance(scenario, str) or scenario == default or not tables:
        return
    held: set[str] = set()
    for table in tables:
        found = _scenarios_of(lake, table)
        if found is None:
            return  # a table without the column: the query scopes the scenario some other way
        held |= found
    if "scenarios" in lake.manifest.tables:  # a declared scenario of no pairs is a true empty answer
        held |= _scenarios_of(lake, "scenarios") or set()
    if scenario not in held:
        raise NoSuchTableError(f"query {query.name!r}: no scenario {scenario!r} (--param scenario) in "
                               f"{', '.join(tables)} at snapshot {lake.snapshot}; scenarios there: "
                               f"{sorted(held) or 'none'}")


def _scenarios_of(lake: Lake, table: str) -> set[str] | None:
    """The scenarios ``table`` holds (None without a ``scenario`` column): from its partition folders
    when it is partitioned by scenario (no row read; a pairs table can hold millions), else its column."""
    entry = lake.manifest.tables[table]
    if "scenario" in entry.properties.get("partition_by", ()):
        return {part.split("=", 1)[1] for f in entry.files for part in f.split("/") if part.startswith("scenario=")}
    frame = lake.table(table)
    if "scenario" not in frame.collect_schema().names():
        return None
    return set(frame.select("scenario").unique().collect()["scenario"].drop_nulls().to_list())


def _check_zoo_param(lake: Lake, query: NamedQuery, bound: Mapping[str, Any]) -> None:
    """Refuse a ``zoo`` parameter naming no zoo of the lake: a mistyped zoo gave an empty table, as if the
    zoo held nothing the query asks for. A query's own default (say ``*`` for every zoo) is its to read."""
    zoo = bound.get("zoo")
    default = next((p.default for p in query.params if p.name == "zoo"), None)
    if isinstance(zoo, str) and zoo != default and zoo not in lake.manifest.zoos:
        raise NoSuchTableError(f"query {query.name!r}: the lake has no zoo {zoo!r} (--param zoo) at snapshot "
                               f"{lake.snapshot}; zoos: {sorted(lake.manifest.zoos) or 'none'}")


def _one_zoo(lake: Lake, bound: Mapping[str, Any]) -> str | None:
    """A named query's ``zoo`` parameter (a zoo of the lake) when the lake's zoos do not line up (their weights
    cannot share one view): the weight views then hold that zoo alone. None otherwise (every zoo, as before)."""
    from weightlake.errors import ArchitectureError

    zoo = bound.get("zoo")
    if not isinstance(zoo, str):
        return None
    try:
        lake.check_aligned([z for z in lake.zoos if lake.manifest.zoo(z).n_models], "the zoos")
    except ArchitectureError:
        return zoo
    return None
