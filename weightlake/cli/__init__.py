"""The ``weightlake`` command line: thin click commands over the library.

Every command takes ``--lake DIR`` (default ``./lake``, or ``$WEIGHTLAKE_LAKE``).  User
errors (any :class:`~weightlake.errors.WeightLakeError`) print one line and exit 1;
``WEIGHTLAKE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from weightlake.errors import QueryError, WeightLakeError

_TEACHING_ORDER = ("demo", "ingest", "sql", "query", "export", "verify", "info", "history", "zoo", "scenario",
                   "pairs", "analyze", "experiments")


class _Group(click.Group):
    """A group that turns library errors into one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WeightLakeError as exc:
            if os.environ.get("WEIGHTLAKE_DEBUG"):
                raise
            click.secho(f"error: {exc}", err=True, fg="red")
            ctx.exit(1)
        except BrokenPipeError:  # `weightlake sql ... | head`: the reader left, nothing to report
            sys.stderr.close()
            ctx.exit(0)
        except OSError as exc:  # the machine said no (disk full, permissions, a vanished file): one line
            if os.environ.get("WEIGHTLAKE_DEBUG"):
                raise
            where = f": {exc.filename!r}" if exc.filename else ""
            click.secho(f"error: {exc.strerror or exc}{where} (WEIGHTLAKE_DEBUG=1 shows where)", err=True, fg="red")
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; the lake is unchanged unless a commit was reported", err=True)
            ctx.exit(130)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _LAZY:
            importlib.import_module(f"weightlake.cli.{_LAZY[cmd_name]}")  # adds its commands to this group
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in sorted(set(_LAZY.values())):
            importlib.import_module(f"weightlake.cli.{module}")
        first = [c for c in _TEACHING_ORDER if c in self.commands]
        return first + [c for c in self.commands if c not in first]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="weightlake")
def main() -> None:
    """weightlake: a data lake and query engine over weight zoos.

    \b
    Start here:
      weightlake demo                               train a tiny zoo, ingest it, query it
      weightlake ingest csv "Merged zoo.csv" --zoo mnist-cnn-s --init kaiming_uniform
      weightlake sql "SELECT activation, avg(accuracy) FROM models GROUP BY ALL"
      weightlake verify

    Every command takes --lake DIR (default ./lake, or $WEIGHTLAKE_LAKE); a lake on object
    storage is --lake s3://BUCKET/PREFIX. Commands that only read take --snapshot N to read
    an earlier snapshot (`weightlake history` lists them).
    """


def lake_option(fn: Any) -> Any:
    return click.option("--lake", "lake_dir", envvar="WEIGHTLAKE_LAKE", default="lake", show_default=True,
                        type=click.Path(file_okay=False),
                        help="Lake root: a directory, file://PATH or s3://BUCKET/PREFIX (credentials and endpoint "
                             "from the AWS_* variables) (or $WEIGHTLAKE_LAKE).")(fn)


def snapshot_option(fn: Any) -> Any:
    return click.option("--snapshot", type=click.IntRange(min=0), metavar="N",
                        help="Read snapshot N instead of the newest (time travel; `weightlake history` lists "
                             "them).")(fn)


def echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


def progress_bar(length: int | None, label: str, unit: str = "items") -> Any:
    """Progress of a long step on stderr: a bar on a terminal, periodic one-line counts and rate
    elsewhere (Jupyter, nohup, CI); see :mod:`weightlake.cli.progress`."""
    from weightlake.cli.progress import Progress

    return Progress(label, length, unit)


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    """``("k=2", "zoo=z")`` -> ``{"k": "2", "zoo": "z"}``; a name given twice is refused (QueryError)."""
    out: dict[str, str] = {}
    for item in values:
        if "=" not in item:
            raise QueryError(f"--param expects NAME=VALUE, got {item!r} (e.g. --param k=3 for $k in the query)")
        key, value = item.split("=", 1)
        key = key.strip()
        if key in out:
            raise QueryError(f"--param {key} given twice ({key}={out[key]!r}, {key}={value!r}); give each name once")
        out[key] = value
    return out


_LAZY = {"zoo": "zoo", "scenario": "scenarios", "pairs": "scenarios", "analyze": "analyze",
         "experiments": "experiments"}
"""Command groups and the module that adds each: imported when the group is invoked (or help lists
every command), so `weightlake sql` loads none of them (issue 16's cold start)."""

# The core commands (ingest, sql, query, export, verify, info, history, demo) register on import.
from weightlake.cli import core  # noqa: E402,F401
