"""weightlake/_cpu.py: numpy's AVX-512 sort is left out on Zen 4 only, and only when weightlake comes first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from weightlake import _cpu

ZEN4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "flags\t\t: fpu sse2 avx2 avx512f avx512dq avx512bw\n\nprocessor\t: 1\n")
ZEN3 = ZEN4.replace(" avx512f avx512dq avx512bw", "")
ZEN5 = ZEN4.replace("cpu family\t: 25", "cpu family\t: 26")
INTEL = ZEN4.replace("AuthenticAMD", "GenuineIntel").replace("cpu family\t: 25", "cpu family\t: 6")


def test_only_zen4_has_the_slow_sort() -> None:
    assert _cpu.slow_avx512_sort(ZEN4)
    assert not _cpu.slow_avx512_sort(ZEN3)  # no AVX-512 at all
    assert not _cpu.slow_avx512_sort(ZEN5)  # compress-store fixed
    assert not _cpu.slow_avx512_sort(INTEL)  # x86-simd-sort's own target
    assert not _cpu.slow_avx512_sort("")


def test_the_choice_respects_the_user_and_a_loaded_numpy() -> None:
    assert _cpu.choose_numpy_dispatch({}, ZEN4, numpy_loaded=False) == _cpu.AVX512_TARGETS
    assert _cpu.choose_numpy_dispatch({}, ZEN4, numpy_loaded=True) is None
    assert _cpu.choose_numpy_dispatch({"NPY_DISABLE_CPU_FEATURES": ""}, ZEN4, numpy_loaded=False) is None
    assert _cpu.choose_numpy_dispatch({"WEIGHTLAKE_NUMPY_AVX512": "keep"}, ZEN4, numpy_loaded=False) is None
    assert _cpu.choose_numpy_dispatch({}, INTEL, numpy_loaded=False) is None


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "WEIGHTLAKE_NUMPY_AVX512")}
    return {**env, **extra}


def _run(code: str, **extra: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], env=_child_env(**extra), capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent)
    return out.stdout.strip()


def test_importing_weightlake_first_sets_numpy_dispatch_as_chosen_for_this_machine() -> None:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    expected = _cpu.choose_numpy_dispatch({}, cpuinfo, numpy_loaded=False) if sys.platform.startswith("linux") else None
    code = "import os, weightlake, numpy; print(os.environ.get('NPY_DISABLE_CPU_FEATURES', '-'))"
    assert _run(code) == (expected or "-")
    assert _run(code, WEIGHTLAKE_NUMPY_AVX512="keep") == "-"
    # numpy first: weightlake changes nothing (numpy has read its dispatch already)
    assert _run("import os, numpy, weightlake; print(os.environ.get('NPY_DISABLE_CPU_FEATURES', '-'))") == "-"


def test_sorts_agree_under_either_dispatch() -> None:
    code = ("import weightlake, numpy as np; r = np.random.default_rng(0); x = r.standard_normal((4, 5000)); "
            "x[:, ::7] = 0.5; o = np.argsort(x, axis=1, kind='stable'); "
            "print(np.sort(x, axis=1).tobytes().hex()[:4000] + ':' + o.tobytes().hex()[:4000])")
    assert _run(code) == _run(code, WEIGHTLAKE_NUMPY_AVX512="keep")
