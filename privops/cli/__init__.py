"""The ``privops`` command line (typer + rich)."""
