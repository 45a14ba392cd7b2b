"""The analysis functions as vectorized (Arrow) DuckDB UDFs, all named ``wl_*``.

Registered on every connection :func:`weightlake.query.connect` opens, for the
architecture the lake's zoos share (``P`` parameters):

* ``wl_<metric>(a FLOAT[P], b FLOAT[P]) -> DOUBLE`` for every pair metric in
  :data:`weightlake.analysis.metrics.METRICS` (``wl_mse``, ``wl_w1``, ``wl_cosine`` ...;
  neuron-cloud metrics such as ``wl_sliced_w`` average over layers);
* ``wl_<metric>_layer(a, b, layer VARCHAR) -> DOUBLE`` for the metrics with a per-layer form
  (``wl_mse_layer(a.w, b.w, 'fc1')``); a layer block is weight and bias together;
* ``wl_<metric>(w FLOAT[P]) -> DOUBLE`` for one-argument metrics (``wl_saturation_share``);
* ``wl_layer(w, layer) -> FLOAT[]``: one layer's weights (``'fc1'``) or bias (``'fc1.bias'``);
* ``wl_l1(w)``, ``wl_l2(w)``: norms of the whole vector;
* ``wl_<metric>_by_id(a_id BIGINT, b_id BIGINT)`` (and ``_layer_by_id``, and one-argument
  forms) for every metric above: the same computation, but only model ids cross into
  Python and the rows are gathered from the lake handle's row sources (decoded when the zoo
  fits the memory budget, memory-mapped otherwise).  DuckDB's
  conversion of ``FLOAT[P]`` values into the UDF protocol costs more than most metrics
  (a no-op vector UDF runs at about 85k rows/s on 2 cores), so over pairs
  ``wl_w1_by_id(p.a_id, p.b_id)`` is the fast form and needs no join with ``weights``.
  The per-layer ``_layer_by_id`` forms read only the layer's columns of a resident zoo (a
  view of them for consecutive ids, as a scan of ``models`` gives), so they run near
  numpy's speed (0.5-1.3x), where ``wl_mse_layer(a.w, b.w, ...)`` pays for both whole arrays.
  Over one model at a time, the fastest per-layer form is the whole-vector macro over the
  layer's own view (``SELECT wl_mse(a.w, b.w) FROM weights_fc1 a ...``, :class:`weightlake.query.LayerWeights`).

Each call receives up to 2,048 rows as Arrow arrays; the fixed-size list columns are
viewed as ``[rows, P]`` numpy blocks without copying, and the same numpy function the
Python API uses computes the whole block at once.

Where a metric is expressible with DuckDB's own fixed-size array functions
(``array_inner_product``, ``array_distance``, ``array_cosine_similarity``), it is a SQL
macro instead (:data:`MACROS`: ``wl_l2``, ``wl_mse``, ``wl_cosine``, ``wl_l2_norm_diff``,
``wl_log_norm_diff``): no value crosses into Python.  They cast the float32 values to
DOUBLE lists and accumulate in float64, so they agree with a float64 numpy reference to
1e-12 relative (the numpy functions sum float32 rows in float32: 1e-6 of each other);
``wl_l2`` sums in float32 (``array_inner_product``; 1e-6 relative, tested to 1e-5), since
a norm has no cancellation and the cast would cost a third of its speed.
``register_udfs(..., macros=False)`` registers the Python UDFs under those names instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from weightlake.arch import CNN_S, Architecture, get_architecture

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


# the values are cast to DOUBLE lists first: float64 accumulation, as numpy's float64 reference.
# Through FLOAT[] (the type every wl_* function takes): DuckDB 2.0's cast of a NULL fixed-size
# array straight to a list keeps NULL children, which list_distance & co. refuse ("can not
# contain NULL values") for the whole query; a list-to-list cast gives the NULL row they skip.
_A, _B = "a::FLOAT[]::DOUBLE[]", "b::FLOAT[]::DOUBLE[]"
_NORM_A, _NORM_B = f"sqrt(list_inner_product({_A}, {_A}))", f"sqrt(list_inner_product({_B}, {_B}))"

MACROS: dict[str, tuple[str, str]] = {
    # the one float32 sum: a norm has no cancellation (1e-6 relative), and the cast costs a third of its speed
    "wl_l2": ("w", "sqrt(array_inner_product(w, w)::DOUBLE)"),
    "wl_mse": ("a, b", f"pow(list_distance({_A}, {_B}), 2) / len(a)"),
    "wl_cosine": ("a, b", f"list_cosine_similarity({_A}, {_B})"),
    "wl_l2_norm_diff": ("a, b", f"abs({_NORM_A} - {_NORM_B})"),
    "wl_log_norm_diff": ("a, b", f"CASE WHEN {_NORM_A} = 0 OR {_NORM_B} = 0 THEN 'nan'::DOUBLE "
                                 f"ELSE abs(ln({_NORM_A}) - ln({_NORM_B})) END"),
}
"""Vector-form functions computed by DuckDB's native array functions: name -> (parameters, body).

A NULL vector (an outer join's missing side) gives NULL, as the Python forms do.  Like
them, the macros take float32 values: other element types are rounded to float32 first.
Each body matches the numpy metric of the same name (``wl_mse`` = ``metrics.mse``,
``wl_l2_norm_diff`` = ``metrics.norm_diff`` with order 2, unsigned; ``wl_log_norm_diff`` is
NaN where a norm is zero, as the numpy form).
"""


def register_macros(con: duckdb.DuckDBPyConnection, only: set[str] | None = None) -> list[str]:
    """Create the :data:`MACROS` on ``con`` (or only the names in ``only``); returns their names.

    Must run before the connection's configuration is locked (:func:`weightlake.query.connect`
    calls it first).  Creating a macro imports nothing and costs well under a millisecond.
    """
    names = [n for n in MACROS if only is None or n in only]
    for name in names:
        params, body = MACROS[name]
        con.execute(f"CREATE OR REPLACE TEMP MACRO {name}({params}) AS {body}")
    return names


def register_udfs(con: duckdb.DuckDBPyConnection, lake: Any = None, arch: Architecture | None = None,
                  only: set[str] | None = None, macros: bool = True) -> list[str]:
    """Register every ``wl_*`` function on ``con`` (or only the names in ``only``); returns their names.

    ``macros``: the functions in :data:`MACROS` as DuckDB macros (default) or as Python UDFs.
    The Python forms are typed ``FLOAT[P]`` (whole vectors of the lake's architecture), so with
    ``macros=False`` those names do not bind over a ``weights_<layer>`` view; the macros take a
    fixed-size array of any width, and ``wl_<metric>_layer`` takes a whole vector and a layer name.
    """
    names: list[str] = register_macros(con, only) if macros else []
    if only is not None and only <= set(names):
        return names  # nothing left that needs Python: no metrics import, no architecture lookup
    import duckdb
    import duckdb.sqltypes as T

    from weightlake.analysis.metrics import METRICS

    arch = arch or _lake_arch(lake)
    vec = duckdb.array_type(T.FLOAT, arch.n_params)
    done = set(names)

    def add(name: str, fn: Callable[..., Any], params: list[Any], returns: Any) -> None:
        if (only is not None and name not in only) or name in done:
            return
        con.create_function(name, fn, params, returns, type="arrow", side_effects=False)  # type: ignore[call-overload]
        names.append(name)

    for spec in METRICS.values():
        if spec.arity == 1:
            add(f"wl_{spec.name}", _unary(spec.fn, arch), [vec], T.DOUBLE)
            continue
        add(f"wl_{spec.name}", _binary(spec, arch), [vec, vec], T.DOUBLE)
        if spec.per_layer and spec.scope == "values":
            add(f"wl_{spec.name}_layer", _binary_layer(spec.fn, arch), [vec, vec, T.VARCHAR], T.DOUBLE)
    if lake is not None and lake.manifest.zoos:
        gather = _Gather(lake)
        for spec in METRICS.values():
            ids = [T.BIGINT] * spec.arity
            # the _by_id forms take each call's architecture from its ids' zoos, not the lake's first
            if spec.name in _SORTED_FORMS:  # a model's sorted values are computed once per handle
                add(f"wl_{spec.name}_by_id", gather.wrap_sorted(_SORTED_FORMS[spec.name]), ids, T.DOUBLE)
            else:
                add(f"wl_{spec.name}_by_id", gather.wrap(spec), ids, T.DOUBLE)
            if spec.arity == 2 and spec.per_layer and spec.scope == "values":
                add(f"wl_{spec.name}_layer_by_id", gather.wrap_layer(spec.fn), [*ids, T.VARCHAR], T.DOUBLE)
    add("wl_layer", _layer(arch), [vec, T.VARCHAR], duckdb.list_type(T.FLOAT))
    add("wl_l1", _unary(lambda x: np.abs(x).sum(axis=1, dtype=np.float64), arch), [vec], T.DOUBLE)
    add("wl_l2", _unary(lambda x: np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)), arch), [vec], T.DOUBLE)
    return names


def _w1_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from weightlake.analysis.distributions import wasserstein_1

    return wasserstein_1(a, b, presorted=True)


def _w2_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from weightlake.analysis.distributions import wasserstein_2

    return wasserstein_2(a, b, presorted=True)


_SORTED_FORMS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"w1": _w1_sorted, "w2": _w2_sorted}


class _Gather:
    """Model ids -> rows, through each zoo's row source on the lake handle (set up on first use).

    A zoo that fits the handle's memory budget is decoded once and gathered from memory; a
    larger one is memory-mapped (:meth:`~weightlake.lake.Lake.row_source`), so a query holds
    the rows of one call (2,048 ids), not the zoo.  The sorted forms (``wl_w1_by_id``,
    ``wl_w2_by_id``) keep every model's sorted values when all zoos fit (another copy of the
    zoo) and sort each call's rows otherwise.  The rows of one call (DuckDB's chunk, which may
    mix scenarios or zoos in any order) are computed per architecture of their ids: the metric,
    a layer's columns and the rows' width are that architecture's.  A row whose own ids are of
    two architectures is refused (a metric between them compares unrelated parameters).
    """

    def __init__(self, lake: Any) -> None:
        self.lake = lake
        self._index: tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]] | None = None
        self._zoos: list[str] = []  # the zoo and architecture of each source number (with the index)
        self._archs: list[Architecture] = []
        self._group: np.ndarray | None = None

    def _sources(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
        """(sorted model ids, their zoo's source number, their position in it, the sources)."""
        if self._index is None:
            zoos = [z for z in self.lake.zoos if self.lake.manifest.zoo(z).n_models]
            self._zoos = zoos
            self._archs = [get_architecture(self.lake.manifest.zoo(z).arch) for z in zoos]
            sources = [self.lake.row_source(z) for z in zoos]
            ids = np.concatenate([s.ids for s in sources]) if sources else np.empty(0, dtype=np.int64)
            which = np.concatenate([np.full(len(s), i, dtype=np.int32) for i, s in enumerate(sources)]) \
                if sources else np.empty(0, dtype=np.int32)
            pos = np.concatenate([np.arange(len(s), dtype=np.int64) for s in sources]) \
                if sources else np.empty(0, dtype=np.int64)
            perm = np.argsort(ids, kind="stable")
            self._index = (ids[perm], which[perm], pos[perm], sources)
        return self._index

    def _locate(self, ids: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(each id's zoo source number, its position in that zoo, the distinct source numbers)."""
        from weightlake.errors import QueryError

        values = _ids(ids)
        order, which, pos, _ = self._sources()
        at = np.minimum(np.searchsorted(order, values), max(len(order) - 1, 0))
        bad = (order[at] != values) if len(order) else np.ones(len(values), dtype=bool)
        if bad.any():
            raise QueryError(f"no model with id {int(values[bad][0])} at snapshot {self.lake.snapshot}")
        return which[at], pos[at], np.unique(which[at])

    def per_arch(self, sides: Sequence[Any], compute: Callable[..., Any]) -> Any:
        """``compute(arch, rows, *ids)`` for each group of a call's rows whose ids share one
        architecture (``rows``: their positions in the call, None for all), put together in
        the call's order; refused, naming both models, where a row's ids are of two."""
        xs = [_ids(s) for s in sides]
        groups = self._arch_groups(xs)
        if len(groups) == 1:
            return compute(groups[0][1], None, *xs)
        out = np.empty(len(xs[0]), dtype=np.float64)
        for rows, arch in groups:
            out[rows] = np.asarray(compute(arch, rows, *(x[rows] for x in xs)), dtype=np.float64)
        return _result(out)

    def _arch_groups(self, xs: Sequence[np.ndarray]) -> list[tuple[np.ndarray | None, Architecture]]:
        from weightlake.errors import QueryError

        self._sources()
        if self._group is None:  # each zoo source's architecture group: the first source of an equal architecture
            self._group = np.asarray([next(j for j in range(i + 1) if self._archs[j] == self._archs[i])
                                      for i in range(len(self._archs))], dtype=np.int64)
        group = self._group
        per_side = [group[self._locate(x)[0]] if len(x) else np.empty(0, dtype=np.int64) for x in xs]
        for side, other in enumerate(per_side[1:], 1):
            bad = np.flatnonzero(other != per_side[0])
            if bad.size:
                i = int(bad[0])
                a, b = int(xs[0][i]), int(xs[side][i])
                raise QueryError(f"models {a} ({self._zoo_text(a)}) and {b} ({self._zoo_text(b)}) are of different "
                                 "architectures: a metric between them would compare unrelated parameters; "
                                 "pair models of one architecture")
        used = np.unique(per_side[0]) if xs and len(xs[0]) else np.zeros(1, dtype=np.int64)
        if len(used) == 1:
            return [(None, self._archs[int(used[0])] if self._archs else CNN_S)]
        return [(np.flatnonzero(per_side[0] == g), self._archs[int(g)]) for g in used]

    def _zoo_text(self, model_id: int) -> str:
        which = int(self._locate(np.asarray([model_id]))[0][0])
        return f"zoo {self._zoos[which]!r}, {self._archs[which].name}"

    def _one_arch(self, used: np.ndarray) -> bool:
        """Whether the zoo sources ``used`` share one architecture (equal descriptions)."""
        return all(self._archs[int(z)] == self._archs[int(used[0])] for z in used[1:])

    def rows(self, ids: Any, cols: slice | None = None) -> np.ndarray:
        """The rows of model ids ``ids`` (``float32 [n, P]``), or only their columns ``cols`` (:func:`_take`)."""
        return self._gather(ids, self._sources()[3], cols, _take)

    def _gather(self, ids: Any, parts: list[Any], cols: slice | None,
                take: Callable[[Any, np.ndarray, slice | None], np.ndarray]) -> np.ndarray:
        """Rows of ``ids`` from ``parts`` (one per zoo source: row sources, or arrays), one take per zoo."""
        from weightlake.errors import QueryError

        zoo, where, used = self._locate(ids)
        if len(used) == 1:
            return take(parts[int(used[0])], where, cols)
        if not self._one_arch(used):
            raise QueryError("the ids span zoos of different architectures; ask one architecture at a time")
        width = self._archs[int(used[0])].n_params
        width = len(range(width)[cols]) if cols is not None else width
        out = np.empty((len(zoo), width), dtype=np.float32)
        for z in used:
            mask = zoo == z
            out[mask] = take(parts[int(z)], where[mask], cols)
        return out

    def sorted_rows(self, ids: Any) -> np.ndarray:
        """Rows with each model's values sorted: from a per-handle cache filled on first use when
        every zoo fits the budget, else sorted per call."""
        from weightlake.analysis.distributions import sort_rows

        sources = self._sources()[3]
        if not all(s.resident for s in sources):
            return sort_rows(self.rows(ids))
        cache = self.lake._cache
        if "sorted" not in cache:  # each zoo's rows, sorted, in the zoo's own row order (a row source's)
            cache["sorted"] = [sort_rows(s.weights) for s in sources]
        return self._gather(ids, cache["sorted"], None, lambda rows, where, _: rows[where])

    def wrap_sorted(self, metric: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., Any]:
        def two(a: Any, b: Any) -> Any:
            return self.per_arch([a, b], lambda _arch, _rows, x, y: _result(
                metric(self.sorted_rows(x), self.sorted_rows(y))))

        return two

    def wrap(self, spec: Any) -> Callable[..., Any]:
        """``wl_<metric>_by_id``; a metric over layers or the whole model gets the ids' architecture."""
        def metric(*sides: Any) -> Any:
            def compute(arch: Architecture, _rows: Any, *ids: np.ndarray) -> Any:
                kwargs = {"arch": arch} if spec.scope in ("layers", "whole") else {}
                return _result(spec.fn(*(self.rows(x) for x in ids), **kwargs))

            return self.per_arch(sides, compute)  # also: two models of different architectures are no pair

        # DuckDB counts the Python parameters, so each arity gets its own signature
        def one(a: Any) -> Any:
            return metric(a)

        def two(a: Any, b: Any) -> Any:
            return metric(a, b)

        return one if spec.arity == 1 else two

    def wrap_layer(self, metric: Callable[..., Any]) -> Callable[..., Any]:
        def fn(a: Any, b: Any, layer: Any) -> Any:
            def compute(arch: Architecture, rows: np.ndarray | None, x: np.ndarray, y: np.ndarray) -> Any:
                return self._layer_call(metric, arch, x, y, layer if rows is None else _take_rows(layer, rows))

            return self.per_arch([a, b], compute)

        return fn

    def _layer_call(self, metric: Callable[..., Any], arch: Architecture, x: np.ndarray, y: np.ndarray,
                    layer: Any) -> Any:
        """A per-layer metric over rows whose ids share architecture ``arch``."""
        if (order := _id_order(x, y)) is not None:
            x, y, layer = x[order], y[order], layer.take(order)
        values = _layer_values(metric, arch, layer, lambda cols: (self.rows(x, cols), self.rows(y, cols)))
        if order is None:
            return values
        return _result(_unsort(order, values.to_numpy()))


def _take_rows(column: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of an Arrow argument (a layer-name column)."""
    import pyarrow as pa

    return column.take(pa.array(rows))


def _ids(column: Any) -> np.ndarray:
    """Model ids of one call (an Arrow array, or anything numpy takes) as int64."""
    values = column.to_numpy(zero_copy_only=False) if hasattr(column, "to_numpy") else np.asarray(column)
    return values.astype(np.int64, copy=False)


def _consecutive(ids: np.ndarray) -> bool:
    return len(ids) > 0 and int(ids[-1]) - int(ids[0]) == len(ids) - 1 and bool((np.diff(ids) == 1).all())


def _id_order(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """The order of a call's rows that makes both sides' ids consecutive, where they are not
    as given but that order does: a hash join hands the pairs ``i, i + 1`` over in its own order,
    and in id order both sides' layer columns are views of a resident zoo instead of gathers
    (:func:`_take`). None otherwise (a range check first, so shuffled pairs pay no sort)."""
    if len(a) < 2 or _consecutive(a) or int(a.max()) - int(a.min()) != len(a) - 1:
        return None
    order = np.argsort(a, kind="stable")
    return order if _consecutive(a[order]) and _consecutive(b[order]) else None


def _unsort(order: np.ndarray, values: Any) -> np.ndarray:
    """Values computed for the rows in ``order``, put back in the call's own order."""
    out = np.empty(len(order), dtype=np.float64)
    out[order] = np.asarray(values, dtype=np.float64)
    return out


def _take(source: Any, where: np.ndarray, cols: slice | None) -> np.ndarray:
    """Rows ``where`` of a row source, only columns ``cols`` when given (then read-only).

    From a resident zoo only those columns are gathered, and consecutive positions (a scan of
    ``models`` in id order) are a read-only view of them, not a copy.
    """
    if cols is None:
        return source.take(where)
    if getattr(source, "resident", False):
        if _consecutive(where):
            return source.weights[int(where[0]):int(where[-1]) + 1, cols]
        return source.weights[where, cols]
    if hasattr(source, "take_columns") and cols.step in (None, 1):  # a tensors-layout zoo: only the layer's chunks
        lo, hi, _ = cols.indices(source.cols)
        return source.take_columns(where, lo, max(lo, hi))
    return source.take(where)[:, cols]


def _lake_arch(lake: Any) -> Architecture:
    if lake is None or not lake.manifest.zoos:
        return CNN_S
    archs = {e.arch["name"]: e.arch for e in lake.manifest.zoos.values()}
    return get_architecture(next(iter(archs.values())))


def rows_of(column: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    """A fixed-size list column as a read-only ``[rows, width]`` float32 view (copies only to join chunks)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values = column.flatten()  # honours the slice offset of the list array
    return values.to_numpy(zero_copy_only=values.null_count == 0).reshape(-1, width)


def _result(values: Any) -> pa.Array:
    import pyarrow as pa

    return pa.array(np.asarray(values, dtype=np.float64))


def _binary(spec: Any, arch: Architecture) -> Callable[..., Any]:
    kwargs = {"arch": arch} if spec.scope in ("layers", "whole") else {}

    def fn(a: Any, b: Any) -> Any:
        return _result(spec.fn(rows_of(a, arch.n_params), rows_of(b, arch.n_params), **kwargs))

    return fn


def _unary(metric: Callable[..., Any], arch: Architecture) -> Callable[..., Any]:
    def fn(a: Any) -> Any:
        return _result(metric(rows_of(a, arch.n_params)))

    return fn


def _blocks(arch: Architecture, layer: Any) -> list[tuple[np.ndarray | None, slice]]:
    """Rows grouped by the layer they ask for: ``(rows or None for all, columns)``.

    The layer argument is usually one constant name; that case skips the per-row strings.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    distinct = pc.unique(layer.combine_chunks() if isinstance(layer, pa.ChunkedArray) else layer).to_pylist()
    if len(distinct) == 1 and distinct[0] is not None:
        spec = arch.layer(str(distinct[0]))
        return [(None, slice(spec.start, spec.stop))]
    names = np.asarray(layer.to_pylist(), dtype=object)
    out = []
    for name in distinct:
        spec = arch.layer(str(name))
        out.append((np.flatnonzero(names == name), slice(spec.start, spec.stop)))
    return out


def _layer_values(metric: Callable[..., Any], arch: Architecture, layer: Any,
                  columns: Callable[[slice], tuple[np.ndarray, np.ndarray]]) -> pa.Array:
    """A per-layer metric of one call's rows: ``columns(cols)`` gives both sides' ``[rows, cols]`` blocks."""
    blocks = _blocks(arch, layer)
    out = np.empty(len(layer), dtype=np.float64)
    for rows, cols in blocks:
        x, y = columns(cols)
        if rows is None:
            out[:] = metric(x, y)
        else:
            out[rows] = metric(x[rows], y[rows])
    return _result(out)


def _binary_layer(metric: Callable[..., Any], arch: Architecture) -> Callable[..., Any]:
    """``wl_<metric>_layer(a FLOAT[P], b FLOAT[P], layer)``: each Arrow block viewed ``[rows, P]``
    without copying, the layer's columns sliced from the view."""

    def fn(a: Any, b: Any, layer: Any) -> Any:
        x, y = rows_of(a, arch.n_params), rows_of(b, arch.n_params)
        return _layer_values(metric, arch, layer, lambda cols: (x[:, cols], y[:, cols]))

    return fn


def _layer(arch: Architecture) -> Callable[..., Any]:
    import pyarrow as pa

    def fn(w: Any, layer: Any) -> Any:
        x = rows_of(w, arch.n_params)
        names = layer.to_pylist()
        if len(set(names)) == 1:
            part = np.ascontiguousarray(arch.select(x, names[0]).reshape(len(x), -1))
            offsets = np.arange(0, part.size + 1, part.shape[1], dtype=np.int32)
            return pa.ListArray.from_arrays(pa.array(offsets), pa.array(part.reshape(-1)))
        return pa.array([arch.select(row, n).reshape(-1) for row, n in zip(x, names, strict=True)],
                        type=pa.list_(pa.float32()))

    return fn
