"""Subcommands of the `localmamba` command, one module each."""
