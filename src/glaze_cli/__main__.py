"""`python -m glaze_cli` runs the command line."""

from __future__ import annotations

from glaze_cli.cli import main

main()
