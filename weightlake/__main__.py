"""``python -m weightlake ...``: the ``weightlake`` command, for environments without its script on PATH."""

from weightlake.cli import main

main(prog_name="weightlake")
