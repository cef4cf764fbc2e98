"""`python -m perennial.cli`: the same as the `perennial` console script."""

from perennial.cli.parsing import entry

entry()
