"""`python -m opsconsole` is the same as the `opsconsole` script."""

from opsconsole.cli import run

run()
