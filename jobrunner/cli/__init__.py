"""The ``jobrunner`` command: a thin typer layer over the library (which never imports typer).

================  ==========================================================================
module            what it holds
================  ==========================================================================
``commands``      the typer app: one function per command, parsing options and calling the library
``options``       every option's declaration, help text and environment variable
``views``         progress bars, tables, the live watch, a run's summary line
``signals``       Ctrl-C and SIGTERM: finished tiles stay, the exit code says which signal
================  ==========================================================================
"""

from jobrunner.cli.commands import app, main

__all__ = ["app", "main"]
