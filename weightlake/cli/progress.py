"""Progress of long commands, on a terminal and off it (one mechanism for every command).

On a terminal, :class:`Progress` draws click's progress bar on stderr.  Anywhere else
(Jupyter's ``!weightlake``, ``nohup``, CI logs), where a bar shows only its label, it
prints one line to stderr when the step starts, then at most one line every
``WEIGHTLAKE_PROGRESS_SECONDS`` seconds (default 10), and a final line, each with counts
and rate::

    evaluate: 3/8 checkpoints (38 %), 0.41 checkpoints/s, 7 s elapsed, about 12 s left
    evaluate: done, 8 checkpoints in 19 s (0.42 checkpoints/s)

``WEIGHTLAKE_PROGRESS`` forces a mode: ``bar``, ``lines`` or ``off``.  A step that raises
prints no final line (the error line says what happened).

Round trip with the library: library functions take a plain ``progress`` callable; the CLI
passes :meth:`Progress.update` (a count of new items), :meth:`Progress.advance_to` (items
done so far) or :meth:`Progress.callback` (``(done, total, ...)`` as the trainer,
evaluator and checkpoint reader call it).
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

MODES = ("bar", "lines", "off")
DEFAULT_SECONDS = 10.0
"""Seconds between two progress lines off a terminal (``WEIGHTLAKE_PROGRESS_SECONDS``)."""


def _mode(stream: IO[str]) -> str:
    forced = os.environ.get("WEIGHTLAKE_PROGRESS", "").strip().lower()
    if forced in MODES:
        return forced
    isatty = getattr(stream, "isatty", None)
    return "bar" if callable(isatty) and isatty() else "lines"


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("WEIGHTLAKE_PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def format_count(n: float, unit: str) -> str:
    """``1234`` -> ``"1,234 rows"``; bytes as ``"12.3 MB"``."""
    if unit == "bytes":
        for size, name in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB")):
            if n >= size:
                return f"{n / size:.1f} {name}"
        return f"{int(n)} B"
    if int(n) == 1 and unit.endswith("s") and not unit.endswith("ss"):  # "1 tasks" read wrong
        unit = unit[:-1]
    return f"{int(n):,} {unit}"


class Progress:
    """A progress reporter for one step: ``with Progress("ingest csv", total, "bytes") as p: ... p.update(n)``.

    Parameters
    ----------
    label
        The step, e.g. ``"evaluate"``.
    total
        Items expected (None or 0 when unknown: lines then show counts and rate only).
    unit
        What is counted (``"rows"``, ``"files"``, ``"bytes"`` ...).
    stream
        Where to write (default stderr).
    """

    def __init__(self, label: str, total: int | None = None, unit: str = "items", *,
                 stream: IO[str] | None = None) -> None:
        self.label, self.unit = label, unit
        self.total = int(total) if total else 0
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.mode = _mode(self.stream)
        self.every = _interval()
        self._bar: Any = None
        self._started = self._last = 0.0

    # click's bar exposes ``length``; callers that learn the total late set it
    @property
    def length(self) -> int:
        return self.total

    @length.setter
    def length(self, value: int | None) -> None:
        self.set_total(value)

    def __enter__(self) -> Progress:
        self._started = self._last = time.monotonic()
        if self.mode == "bar":
            import click

            self._bar = click.progressbar(length=self.total, label=self.label, file=self.stream, show_eta=True,
                                          show_percent=True)
            self._bar.__enter__()
        elif self.mode == "lines":
            self._write(f"{self.label}: started" + (f", {format_count(self.total, self.unit)} to do" if self.total
                                                    else ""))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
        elif self.mode == "lines" and exc_type is None:
            seconds = time.monotonic() - self._started
            self._write(f"{self.label}: done, {format_count(self.done, self.unit)} in {seconds:.0f} s "
                        f"({self._rate(seconds)})")

    def set_total(self, total: int | None) -> None:
        self.total = int(total) if total else 0
        if self._bar is not None:
            self._bar.length = self.total

    def update(self, n: int = 1) -> None:
        """``n`` more items are done."""
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(int(n))
        elif self.mode == "lines":
            self._maybe_line()

    def advance_to(self, done: int) -> None:
        """``done`` items are done so far (absolute)."""
        self.update(int(done) - self.done)

    def callback(self, done: int, total: int | None = None, *_: Any) -> None:
        """For ``progress(done, total, item)`` callers."""
        if total and total != self.total:
            self.set_total(total)
        self.advance_to(done)

    def _maybe_line(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        seconds = now - self._started
        text = f"{self.label}: {self._counts()}, {self._rate(seconds)}, {seconds:.0f} s elapsed"
        if self.total and self.done:
            text += f", about {seconds * (self.total - self.done) / self.done:.0f} s left"
        self._write(text)

    def _counts(self) -> str:
        if not self.total:
            return format_count(self.done, self.unit)
        share = f"({100 * self.done / self.total:.0f} %)"
        if self.unit == "bytes":
            return f"{format_count(self.done, 'bytes')} of {format_count(self.total, 'bytes')} {share}"
        return f"{self.done:,}/{format_count(self.total, self.unit)} {share}"

    def _rate(self, seconds: float) -> str:
        rate = self.done / seconds if seconds > 0 else 0.0
        if self.unit == "bytes":
            return f"{format_count(rate, 'bytes')}/s"
        return f"{rate:,.2f} {self.unit}/s" if rate < 10 else f"{rate:,.0f} {self.unit}/s"

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
