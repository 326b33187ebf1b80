"""`python -m compressor.cli ...`: the same as the `compressor` command."""

from compressor.cli.app import main

main()
