"""The labelled result: ``<outputs>/stitched.nc``, NetCDF-4 following the CF conventions (1.8).

What it holds, so that ``xarray.open_dataset`` (or any netCDF reader) needs nothing else:

================  ==============================================================================
variable          what
================  ==============================================================================
one per axis      the coordinate variable: named as the axis, its values exactly the plan's
                  (the same float64 the kernel received), ``units`` where the axis has one
one per field     float64 over every axis in the plan's order, ``long_name`` and ``units`` where
                  the kernel or ``--unit`` say, ``_FillValue`` NaN (a missing tile's cells)
``complete``      only after ``reduce --partial`` with tiles missing: 1 where the cell was
                  computed, 0 where its tile is missing (``flag_values``, ``flag_meanings``)
================  ==============================================================================

Global attributes: ``Conventions``, ``title``, ``history`` (the plan as a ``jobrunner plan``
command, every number exact, and the reduce), ``source`` (jobrunner's version, the kernel and
its code fingerprint), ``references`` where the kernel gives one, and ``jobrunner_*`` ones: the
plan id, the tiling, the kernel's parameters, the hosts that computed tiles, the tiles missing.

It is written by ``h5netcdf`` (the ``netcdf`` extra: pure Python over h5py, and it writes to a
file object, so the file is made as every partial is, never through a link) block by block as
``reduce`` stitches, with the data variables stored contiguously: memory stays at one block.
"""

from __future__ import annotations

import json
import math
import time
from typing import BinaryIO

import numpy as np

from jobrunner import labels
from jobrunner.errors import JobRunnerError
from jobrunner.plan import Plan

CONVENTIONS = "CF-1.8"
#: What to install when the writer is missing.
INSTALL_HINT = "pip install 'jobrunner[netcdf]'"


def writer_missing() -> str | None:
    """Why ``stitched.nc`` cannot be written here (the writer is not installed), or None."""
    try:
        import h5netcdf  # noqa: F401
    except ImportError:
        return f"stitched.nc not written: its writer, h5netcdf, is not installed ({INSTALL_HINT})"
    return None


def _text(value: str):
    """An attribute's text as netCDF's classic ``char`` type where it is ASCII, which every reader
    takes (h5netcdf would write a variable-length ``string``, which some older tools refuse); other
    text stays a UTF-8 ``string``, since readers decode ``char`` as bytes of no known encoding."""
    return np.bytes_(value.encode("ascii")) if value.isascii() else value


def _texts(attributes: dict[str, str]) -> dict:
    return {key: _text(value) for key, value in attributes.items()}


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class DatasetWriter:
    """Writes one plan's stitched result into ``file`` as NetCDF-4, a block along the first axis at
    a time.  A context manager: on leaving it the file is closed, or abandoned after an error."""

    def __init__(self, file: BinaryIO, plan: Plan, attributes: dict[str, str], mask_rows: int | None) -> None:
        """``attributes``: global ones; ``mask_rows``: rows of the ``complete`` mask's chunks, or None
        for a result with no tile missing (no mask)."""
        import h5netcdf
        import h5py

        self.fields = labels.fields(plan)
        self._h5 = h5py.File(file, "w")  # ours to close: h5netcdf leaves a File it was handed open
        self._nc = h5netcdf.File(self._h5, "w")
        self._mask = None
        try:
            self._define(plan, attributes, mask_rows)
        except BaseException as error:
            self.abandon()
            if isinstance(error, ValueError | TypeError):  # h5py's refusal of a name or an attribute
                raise JobRunnerError(f"cannot write stitched.nc: {error}") from None
            raise

    def _define(self, plan: Plan, attributes: dict[str, str], mask_rows: int | None) -> None:
        names, shape = plan.grid.names, plan.shape
        self._nc.dimensions = dict(zip(names, shape, strict=True))
        for index, (axis, points) in enumerate(zip(plan.grid.axes, plan.grid.points(), strict=True)):
            coordinate = self._nc.create_variable(axis.name, (axis.name,), "<f8", data=points)
            unit = labels.axis_unit(plan, index)
            coordinate.attrs.update(_texts({"long_name": axis.name, **({"units": unit} if unit else {})}))
        for field in self.fields:
            # No chunks: stored contiguously, so each block is one run of bytes on the disk.
            variable = self._nc.create_variable(field.name, names, "<f8", fillvalue=np.nan)
            variable.attrs.update(
                _texts({key: value for key, value in (("long_name", field.long_name), ("units", field.units)) if value})
            )
        if mask_rows is not None:
            self._mask = self._nc.create_variable(
                "complete", names, "u1", chunks=(min(mask_rows, shape[0]), *shape[1:]), compression="gzip"
            )
            self._mask.attrs.update(
                {
                    "long_name": _text("1 where the cell was computed, 0 where its tile is missing"),
                    "flag_values": np.array([0, 1], dtype="u1"),
                    "flag_meanings": _text("missing computed"),
                }
            )
        self._nc.attrs.update(_texts({"Conventions": CONVENTIONS, **attributes}))

    def write(self, start: int, stop: int, rows: np.ndarray, computed: np.ndarray | None) -> None:
        """Indices ``[start, stop)`` of the first axis: every field's values, and where they were computed."""
        for field in self.fields:
            self._nc.variables[field.name][start:stop] = rows[field.name] if rows.dtype.names else rows
        if self._mask is not None and computed is not None:
            self._mask[start:stop] = computed

    def close(self) -> None:
        """Finish the file (its last metadata is written now: a full disk can still fail here)."""
        try:
            self._nc.close()
            self._h5.close()
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Let go of a file whose writing failed: the caller removes it; nothing may flush it again.

        h5netcdf's ``File.__del__`` closes, which flushes through an HDF5 file whose writes have
        failed (a full disk), and that crashed the interpreter (a segfault in the garbage collector;
        h5netcdf 1.8, h5py 3.16): so it is marked closed, and HDF5's own file is closed while the
        Python file under it is still open, its error ignored.  Guarded by
        tests/test_results.py::test_a_disk_that_fills_while_the_dataset_is_written_fails_in_one_line.
        """
        self._nc._closed = True  # private: the only way to stop its __del__ from flushing again
        try:
            self._h5.close()
        except Exception:  # the file is thrown away; its error was the one reported
            pass

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()


def attributes(plan: Plan, planned_at: float, hosts: dict[str, int], missing: int, command: str) -> dict[str, str]:
    """The dataset's global attributes (see the module docstring)."""
    from jobrunner.identity import versions

    references = labels.references(plan)
    kernel = f"kernel {plan.kernel}" + (" (pointwise)" if plan.pointwise else "")
    found = {
        "title": f"{labels.title(plan)}: {plan.describe()}",
        "history": f"{utc(planned_at)} {plan.command()}\n{utc(time.time())} {command}",
        "source": f"jobrunner ({versions()}), {kernel}, code {plan.code}",
        "references": str(references) if references else "",
        "jobrunner_plan": plan.id,
        "jobrunner_tiling": plan.tiling_text,
        "jobrunner_params": json.dumps(labels.parameters(plan), default=repr),
        "jobrunner_hosts": ", ".join(f"{host} ({count} tiles)" for host, count in sorted(hosts.items())),
        "jobrunner_tiles_missing": f"{missing} of {math.prod(plan.tiling)}",
    }
    return {key: value for key, value in found.items() if value}
