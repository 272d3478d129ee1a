"""How numbers read in what jobrunner prints: ``1 tile``, ``2 tiles``; ``3.5 MiB``.

Every noun jobrunner counts takes an ``s`` in the plural (tile, job, worker, claim, attempt, run,
CPU, core), so one rule serves them all; a noun that did not would need a word of its own here.
"""


def count_of(number: int, noun: str) -> str:
    """``1 tile``, ``0 tiles``, ``16 tiles``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def size_of(n: float) -> str:
    """Bytes in binary units, as ``ls -h`` and ``free`` count them: ``912 bytes``, ``3.5 MiB``, ``28.0 GiB``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} bytes"
