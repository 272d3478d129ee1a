"""Ctrl-C and SIGTERM on the command line: finished tiles stay, the run exits as a shell expects."""

from __future__ import annotations

import signal
from contextlib import contextmanager

import typer

from jobrunner.cli.views import err, styled


@contextmanager
def interruptible():
    """Ctrl-C and SIGTERM (what scancel sends) stop the work cleanly; finished tiles stay.

    Exits 128 + the signal's number, as a shell reports a process killed by it: 130 for Ctrl-C,
    143 for SIGTERM, so that Slurm and scripts can tell a stopped worker from a failed one.
    """
    received = [signal.SIGINT]

    def on_sigterm(signum, frame):
        received[0] = signum
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except KeyboardInterrupt:
        name = "SIGTERM" if received[0] == signal.SIGTERM else "interrupted"
        err.print(styled((name, "yellow"), ": finished tiles are kept; the jobs in flight are claimable again"))
        raise typer.Exit(128 + received[0]) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
