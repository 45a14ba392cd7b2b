"""numpy's sort on AMD Zen 4: start numpy on its AVX2 kernels when weightlake is imported first.

numpy dispatches ``np.sort``/``np.argsort``/``np.unique`` to x86-simd-sort's AVX-512 kernels
wherever AVX-512 is present. On Zen 4 (AMD family 25 with AVX-512) those kernels store with
``vpcompress`` to memory, which that core runs in microcode: measured here, a sort of float64
rows runs at 25 M keys/s against 99 M keys/s on numpy's AVX2 kernels (float32: 45 against
202), and the Spearman half of ``analyze correlations`` takes 2.8 s against 1.25 s. numpy reads
its dispatch once, when it is first imported, from ``NPY_DISABLE_CPU_FEATURES``; so when
weightlake is imported before numpy (the ``weightlake`` command, scripts that import it first,
processes they start) on such a CPU, it sets that variable to leave out the AVX-512 targets.
Elementwise SVML functions lose some speed (``np.exp`` on float32 about 2x slower); most ufuncs
are unchanged (Zen 4 runs 512-bit vectors as two 256-bit halves).

Nothing is changed when numpy is already imported, when ``NPY_DISABLE_CPU_FEATURES`` is set,
on other CPUs, or with ``WEIGHTLAKE_NUMPY_AVX512=keep``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

AVX512_TARGETS = "X86_V4 AVX512_ICL AVX512_SPR"
"""numpy's dispatch targets that carry AVX-512 (baseline X86_V2 and X86_V3/AVX2 stay)."""


def slow_avx512_sort(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo`` text describes a CPU whose AVX-512 compress-store is microcoded (Zen 4)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return (fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25"
            and "avx512f" in fields.get("flags", "").split())


def choose_numpy_dispatch(env: Mapping[str, str], cpuinfo: str, numpy_loaded: bool) -> str | None:
    """The ``NPY_DISABLE_CPU_FEATURES`` value to set, or ``None`` to leave numpy as it is."""
    if numpy_loaded or "NPY_DISABLE_CPU_FEATURES" in env:
        return None
    if env.get("WEIGHTLAKE_NUMPY_AVX512", "").lower() == "keep":
        return None
    return AVX512_TARGETS if slow_avx512_sort(cpuinfo) else None


def apply() -> None:
    """Set ``NPY_DISABLE_CPU_FEATURES`` for this process (and its children) if :func:`choose_numpy_dispatch` says so."""
    if "numpy" in sys.modules or not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpuinfo = f.read(65536)
    except OSError:
        return
    value = choose_numpy_dispatch(os.environ, cpuinfo, numpy_loaded=False)
    if value is not None:
        os.environ["NPY_DISABLE_CPU_FEATURES"] = value
