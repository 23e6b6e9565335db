"""`python -m console` is the same as the `opsconsole` script."""

from console.cli import run

run()
