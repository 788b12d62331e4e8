"""Subcommands of the ``crossmap`` CLI, one module each."""
