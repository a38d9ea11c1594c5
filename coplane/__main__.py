"""`python -m coplane` runs the CLI."""

from coplane.cli import main

main()
