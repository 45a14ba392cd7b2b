"""Shared benchmark helpers: the full-size synthetic zoo, timing, peak memory of a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DATA = Path("bench-data")
FULL_ROWS = 36_468


def full_csv(data_dir: Path = BENCH_DATA) -> Path:
    """The full-size CSV zoo (1,013 labels x 6 activations x 6 epochs), generated once and reused."""
    from weightlake.zoo.synthetic import write_synthetic_csv

    path = data_dir / "zoo-full.csv"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        t = time.perf_counter()
        n = write_synthetic_csv(tmp, seed=0)
        tmp.rename(path)
        print(f"generated {path} ({n} rows, {path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s")
    return path


def full_lake(data_dir: Path = BENCH_DATA) -> Path:
    """A lake holding the full-size zoo as 'mnist-cnn-s', built once and reused."""
    from weightlake.ingest.csv_zoo import ingest_csv

    root = data_dir / "lake-full"
    if not (root / "_current").exists():
        ingest_csv(root, full_csv(data_dir), zoo="mnist-cnn-s", init="kaiming_uniform")
    return root


def best_time(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    return best_time(fn, repeat)[0]


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) for a timed child, without ``PYTHONDONTWRITEBYTECODE``.

    With it set (as on this machine), an editable checkout's modules are compiled from source
    in every fresh process (0.12 s for the 24 modules ``weightlake sql`` imports), which an
    installed package (bytecode compiled at install) or any default Python setup never pays;
    without it the first (warm-up) run writes the caches that later rounds read.
    """
    out = dict(os.environ if env is None else env)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    return out


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter, timed inside the child; returns its JSON result.

    ``code`` must set ``result`` (a dict); the child adds ``seconds`` (wall time of the
    code), ``cpu_s`` (CPU time of the whole process, imports included) and ``peak_gb`` (its
    own peak resident memory).
    """
    wrapper = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        f"{code}\n"
        "result['seconds'] = time.perf_counter() - t\n"
        # CPU seconds of every thread (user + system): the work done, less sensitive to a busy machine
        "import resource as _r; _u = _r.getrusage(_r.RUSAGE_SELF)\n"
        "result['cpu_s'] = _u.ru_utime + _u.ru_stime\n"
        # VmHWM: this process's own peak; ru_maxrss would carry the parent's size at fork over the exec
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "result['peak_gb'] = int(hwm.split()[1]) * 1024 / 1e9\n"
        "print(json.dumps(result))\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *args], check=True, capture_output=True, text=True,
                         env=child_env(env))
    return json.loads(out.stdout.strip().splitlines()[-1])


def emit(name: str, figures: dict[str, Any]) -> None:
    print(json.dumps({"benchmark": name, **figures}))


QUICK_ROWS = 4096


def quick_csv(data_dir: Path = BENCH_DATA) -> Path:
    """The first 4,096 data rows of the full-size CSV zoo (for ``--quick`` runs), cut once."""
    path = data_dir / "zoo-quick.csv"
    if not path.exists():
        src = full_csv(data_dir)
        tmp = path.with_suffix(".partial")
        with open(src, "rb") as fh, open(tmp, "wb") as out:
            for _ in range(QUICK_ROWS + 1):
                out.write(fh.readline())
        tmp.rename(path)
    return path


def quick_lake(data_dir: Path = BENCH_DATA) -> Path:
    """A lake of the quick CSV as 'mnist-cnn-s', built once and reused."""
    from weightlake.ingest.csv_zoo import ingest_csv

    root = data_dir / "lake-quick"
    if not (root / "_current").exists():
        ingest_csv(root, quick_csv(data_dir), zoo="mnist-cnn-s", init="kaiming_uniform")
    return root
