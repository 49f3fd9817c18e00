"""Subcommands of the ``llmtwin`` CLI, one module each (see shared/cli.py)."""
