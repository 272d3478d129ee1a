"""Tile kernels: functions of the grid's axes, by name, and the plan's parameters.

On the lab's grid ``x`` is a column of the tile's x values (shape ``(n, 1)``), ``y`` a row of its
y values (shape ``(1, m)``); the kernel returns a float array of shape ``(n, m)``, or a dict of
them, one per field (:mod:`jobrunner.compute` has the table of the two ways a kernel is called).
A plan names its kernel by a short name from :data:`BUILTIN_KERNELS` or by
``package.module:function``; the spool carries that name and never any code.  A kernel may
describe its result with attributes (``field``, ``long_name``, ``units``, ``title``,
``references``, ``axis_units``, ``markers``: :mod:`jobrunner.labels` has the table), as the
built-in ones do.

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
import json
import math
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
    "quake": "jobrunner.kernels:hypocentre_misfit",
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


buried_sphere.field = "gravity_anomaly"
buried_sphere.long_name = "vertical gravity anomaly"
buried_sphere.units = "mGal"
buried_sphere.title = "Buried sphere"
buried_sphere.axis_units = {"x": "m", "y": "m"}
buried_sphere.references = (
    "Telford, Geldart and Sheriff, Applied Geophysics, 2nd ed., Cambridge University Press, 1990, section 2.7; "
    "Blakely, Potential Theory in Gravity and Magnetic Applications, Cambridge University Press, 1995, chapter 3"
)
for _gaussian in (gaussian_loop, gaussian_numpy, gaussian2d):
    _gaussian.field, _gaussian.long_name, _gaussian.title = "g", "g(x, y)", "2-D Gaussian"


#: Seismic stations of the earthquake-location example: name, east (km), north (km), and the
#: P arrival picked there (s after a reference minute).  The picks are synthetic: a source at
#: x = 12 km, y = -7 km, 9 km deep, origin time 3 s, in the default medium, rounded to the
#: millisecond after adding picking errors of 4 to 12 ms.
STATIONS = (
    ("ST01", -20.0, -15.0, 9.073),
    ("ST02", 5.0, -25.0, 6.772),
    ("ST03", 25.0, -10.0, 5.861),
    ("ST04", 22.0, 18.0, 8.024),
    ("ST05", -5.0, 24.0, 9.475),
    ("ST06", -25.0, 8.0, 10.247),
    ("ST07", 0.0, 0.0, 5.944),
    ("ST08", 12.0, 6.0, 5.796),
)


def p_travel_time(distance: float, depth: float, v0: float, gradient: float) -> float:
    """First-arrival P time (s) from a source at ``depth`` (km) to a station at the surface
    ``distance`` km away horizontally, where the velocity grows linearly with depth,
    ``v(z) = v0 + gradient z`` (km/s, 1/s).  Rays are arcs of circles, and the time is exact::

        t = arccosh(1 + gradient^2 (distance^2 + depth^2) / (2 v(depth) v0)) / gradient

    (Slotnick, *Lessons in Seismic Computing*, Society of Exploration Geophysicists, 1959;
    Fomel, Luo and Zhao, Geophysics 74(5), 2009).  It is computed as the equal
    ``2 arcsinh(gradient s / (2 sqrt(v(depth) v0))) / gradient``, with ``s`` the straight-line
    distance: ``arccosh`` near 1 loses every digit to rounding when the gradient is small.  As the
    gradient goes to 0 the time becomes ``s / v0``, the straight ray in a uniform medium.
    """
    straight = math.hypot(distance, depth)
    if gradient == 0:
        return straight / v0
    return 2 * math.asinh(gradient * straight / (2 * math.sqrt((v0 + gradient * depth) * v0))) / gradient


def hypocentre_misfit(x: float, y: float, depth: float, v0: float = 5.5, gradient: float = 0.03) -> dict:
    """Earthquake location: how well a trial source at (x, y, depth) explains the P arrivals.

    One cell at a time (``--pointwise``), over ``x`` and ``y`` (km east and north) and ``depth``
    (km).  For a trial source, each station's residual is its pick minus the travel time from
    :func:`p_travel_time`; the origin time that fits best (least squares) is their mean, and the
    misfit is the root mean square of the residuals about it (Geiger's method's objective, here
    searched over a grid instead of linearised; Lay and Wallace, *Modern Global Seismology*,
    Academic Press, 1995, section 6.4).  Returns both fields: ``misfit`` (s), whose minimum is the
    location, and ``origin_time`` (s after the picks' reference minute) at each trial source.
    """
    if v0 <= 0 or gradient < 0:
        raise ValueError(f"need v0 > 0 and gradient >= 0, got v0={v0}, gradient={gradient}")
    residuals = [
        pick - p_travel_time(math.hypot(x - east, y - north), depth, v0, gradient) for _, east, north, pick in STATIONS
    ]
    origin = sum(residuals) / len(residuals)
    misfit = math.sqrt(sum((r - origin) ** 2 for r in residuals) / len(residuals))
    return {"misfit": misfit, "origin_time": origin}


hypocentre_misfit.title = "Earthquake location"
hypocentre_misfit.long_name = {"misfit": "RMS P-arrival residual", "origin_time": "best-fitting origin time"}
hypocentre_misfit.units = {"misfit": "s", "origin_time": "s"}
hypocentre_misfit.axis_units = {"x": "km", "y": "km", "depth": "km"}
hypocentre_misfit.axes = ("x", "y", "depth")
hypocentre_misfit.pointwise = True
hypocentre_misfit.markers = tuple((name, {"x": east, "y": north}) for name, east, north, _ in STATIONS)
hypocentre_misfit.references = (
    "Slotnick, Lessons in Seismic Computing, SEG, 1959 (travel times in a linear velocity gradient); "
    "Lay and Wallace, Modern Global Seismology, Academic Press, 1995, section 6.4 (earthquake location)"
)


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
    except Exception as error:  # the user's module fails as it runs: a syntax error, a name error at top level
        where = f" (line {error.lineno} of {error.filename})" if isinstance(error, SyntaxError) else ""
        raise JobRunnerError(
            f"kernel {name!r}: importing module {module_name!r} raised {type(error).__name__}: {error}{where}"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise JobRunnerError(f"kernel {name!r}: module {module_name!r} has no function {function_name!r}")
    return function


def params_from_options(items: list[str] | None, sigma: float | None = None) -> dict[str, Any]:
    """A kernel's parameters from ``--param NAME=VALUE`` options (VALUE a JSON literal), and the
    Gaussian's ``--sigma``, given once."""
    params: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise JobRunnerError(f"--param takes NAME=VALUE, such as depth=250, not {item!r}")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            raise JobRunnerError(f"--param {item}: {value!r} is not a JSON literal (strings need quotes)") from None
    if sigma is not None:
        if "sigma" in params:
            raise JobRunnerError("sigma is given twice, by --sigma and by --param sigma=...: give it once")
        params["sigma"] = sigma
    return params
