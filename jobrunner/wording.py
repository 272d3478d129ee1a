"""How numbers read in what jobrunner prints: ``1 tile``, ``2 tiles``.

Every noun jobrunner counts takes an ``s`` in the plural (tile, job, worker, claim, attempt, run,
CPU, core), so one rule serves them all; a noun that did not would need a word of its own here.
"""


def count_of(number: int, noun: str) -> str:
    """``1 tile``, ``0 tiles``, ``16 tiles``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
