"""Tile kernels: functions ``f(x, y, **params)`` that fill one tile.

``x`` is a column of the tile's x values (shape ``(n, 1)``), ``y`` a row of its y values
(shape ``(1, m)``); the kernel returns a float array of shape ``(n, m)``.  A plan names its
kernel by a short name from :data:`BUILTIN_KERNELS` or by ``package.module:function``; the
spool carries that name and never any code.  A kernel may carry a ``label`` (its colorbar's)
a ``title`` (its figures') and an ``axis_unit``, as the built-in ones do.

Why the vectorized Gaussian squares each axis value on its own
--------------------------------------------------------------
The lab's loop evaluates ``x**2`` on a NumPy *scalar*, which calls the C library's ``pow``;
``pow`` is not correctly rounded, so ``x**2`` can differ in the last place from ``x*x``,
which is what ``x**2`` on an *array* computes.  The naive vectorization therefore differs
from the loop in about 0.1 % of the cells at step 0.001.  Squaring each axis value as a
scalar, exactly as the loop does (only ``n + m`` scalar calls), and vectorizing the rest
reproduces the loop's bits at a few nanoseconds per point.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jobrunner.errors import JobRunnerError

Kernel = Callable[..., np.ndarray]

BUILTIN_KERNELS = {
    "loop": "jobrunner.kernels:gaussian_loop",
    "numpy": "jobrunner.kernels:gaussian_numpy",
    "sphere": "jobrunner.kernels:buried_sphere",
}

#: Parameters the built-in Gaussian kernels take when a plan gives none.
GAUSSIAN_DEFAULTS = {"sigma": 1.0}


def gaussian2d(x, y, sigma):
    """The lab's 2-D Gaussian, term for term, so that scalar calls round exactly as the lab's do."""
    return (1 / (2 * np.pi * sigma**2)) * np.exp(-1 * (x**2 + y**2) / (2 * sigma**2))


def _check_sigma(sigma: float) -> None:
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}: try --sigma 1")


def gaussian_loop(x: np.ndarray, y: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """The lab's point-by-point Python loop (Task 1): the reference every other kernel must match."""
    _check_sigma(sigma)
    xs, ys = np.ravel(x), np.ravel(y)
    z = np.empty((len(xs), len(ys)))
    for i, xv in enumerate(xs):
        for j, yv in enumerate(ys):
            z[i, j] = gaussian2d(xv, yv, sigma)
    return z


def gaussian_numpy(x: np.ndarray, y: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """The same formula vectorized, bit-identical to :func:`gaussian_loop` (see the module docstring)."""
    _check_sigma(sigma)
    x2 = np.array([xv**2 for xv in np.ravel(x)]).reshape(-1, 1)
    y2 = np.array([yv**2 for yv in np.ravel(y)]).reshape(1, -1)
    return (1 / (2 * np.pi * sigma**2)) * np.exp(-1 * (x2 + y2) / (2 * sigma**2))


#: Newton's gravitational constant, m^3 kg^-1 s^-2 (CODATA 2018).
GRAVITATIONAL_CONSTANT = 6.67430e-11
#: 1 mGal = 1e-5 m/s^2, the unit of gravity surveys.
MGAL = 1e-5


def buried_sphere(
    x: np.ndarray,
    y: np.ndarray,
    depth: float = 250.0,
    radius: float = 100.0,
    density_contrast: float = 500.0,
    x0: float = 0.0,
    y0: float = 0.0,
) -> np.ndarray:
    """Vertical gravity anomaly, in mGal, of a buried sphere, on a map grid at the surface.

    A sphere of radius ``R`` (m) whose density differs from its host rock by ``drho`` (kg/m^3),
    centred at depth ``z0`` (m) below the point ``(x0, y0)``, attracts like a point mass
    ``M = 4/3 pi R^3 drho``; at the surface point ``(x, y)``::

        dg_z(x, y) = G M z0 / ((x - x0)^2 + (y - y0)^2 + z0^2)^(3/2)

    (Telford, Geldart and Sheriff, *Applied Geophysics*, 2nd ed., Cambridge University Press,
    1990, section 2.7, gravity effects of simple shapes; Blakely, *Potential Theory in Gravity
    and Magnetic Applications*, Cambridge University Press, 1995, chapter 3.)  ``x`` and ``y`` are
    in metres.  The peak, over the centre, is ``G M / z0^2``; the anomaly falls to half of it at a
    horizontal distance of about ``0.77 z0``, the classic depth rule.
    """
    if depth <= 0 or radius <= 0 or radius >= depth:
        raise ValueError(f"need 0 < radius < depth, got radius={radius}, depth={depth}")
    mass = 4.0 / 3.0 * np.pi * radius**3 * density_contrast
    distance_cubed = ((x - x0) ** 2 + (y - y0) ** 2 + depth**2) ** 1.5
    return GRAVITATIONAL_CONSTANT * mass * depth / distance_cubed / MGAL


buried_sphere.label = "vertical gravity anomaly [mGal]"
buried_sphere.title = "Buried sphere"
buried_sphere.axis_unit = "m"
gaussian_loop.label = gaussian_numpy.label = "g(x, y)"
gaussian_loop.title = gaussian_numpy.title = "2-D Gaussian"


def kernel_parameters(function: Kernel, axes: tuple[str, ...]) -> dict[str, Any] | None:
    """A kernel's parameters other than its axes, each with its default (``inspect.Parameter.empty``
    when it has none); None if it takes any keyword (``**params``)."""
    signature = inspect.signature(function)
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return {name: p.default for name, p in signature.parameters.items() if name not in axes}


def check_parameters(name: str, function: Kernel, axes: tuple[str, ...], params: dict[str, Any]) -> None:
    """Refuse parameters the kernel does not take, and say which it takes; and parameters it needs but lacks."""
    taken = kernel_parameters(function, axes)
    if taken is None:
        return
    described = ", ".join(
        f"{p} (default {d!r})" if d is not inspect.Parameter.empty else f"{p} (no default)" for p, d in taken.items()
    )
    unknown = sorted(set(params) - set(taken))
    if unknown:
        close = {u: difflib.get_close_matches(u, taken, n=1) for u in unknown}
        hints = "; ".join(f"did you mean {c[0]}?" for c in close.values() if c)
        raise JobRunnerError(
            f"kernel {name} has no parameter {', '.join(unknown)}"
            + (f" ({hints})" if hints else "")
            + (f": its parameters are {described}" if taken else ": it takes none")
        )
    missing = [p for p, d in taken.items() if d is inspect.Parameter.empty and p not in params]
    if missing:
        raise JobRunnerError(
            f"kernel {name} needs {', '.join(missing)}: pass --param {missing[0]}=VALUE "
            f"(its parameters are {described})"
        )


def kernel_reference(name: str) -> str:
    """The ``module:function`` a kernel name stands for (a short name or a reference itself)."""
    if name in BUILTIN_KERNELS:
        return BUILTIN_KERNELS[name]
    module, sep, function = name.partition(":")
    if not sep or not module or not function:
        raise JobRunnerError(
            f"unknown kernel {name!r}: use one of {', '.join(BUILTIN_KERNELS)} or package.module:function"
        )
    return name


def default_params(name: str) -> dict[str, Any]:
    return dict(GAUSSIAN_DEFAULTS) if name in ("loop", "numpy") else {}


def local_kernel_folder(name: str, folder: Path) -> str:
    """``folder`` (absolute) if the kernel's module is a file or package there, else "".

    ``jobrunner plan`` records it, so that workers started anywhere that disk is mounted (a Slurm
    array, another terminal) import that module as ``plan`` did, without ``PYTHONPATH``: the
    installed ``jobrunner`` command, unlike ``python -m``, does not put the current folder on
    Python's path.
    """
    top = kernel_reference(name).partition(":")[0].split(".")[0]
    found = (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file()
    return str(folder.absolute()) if name not in BUILTIN_KERNELS and found else ""


def load_kernel(name: str, folder: str = "") -> Kernel:
    """Import the kernel a plan names (``folder``: where its module is, if the plan records one)."""
    if folder and folder not in sys.path:
        sys.path.insert(0, folder)  # first, as `python -m` puts the current folder: the plan's module wins
    module_name, _, function_name = kernel_reference(name).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise JobRunnerError(f"kernel {name!r}: cannot import module {module_name!r} ({error})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise JobRunnerError(f"kernel {name!r}: module {module_name!r} has no function {function_name!r}")
    return function
