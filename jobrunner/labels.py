"""What a plan's result is called and measured in: its fields, their names and units, its axes' labels.

A kernel may describe its result with attributes set on the function, as the built-in ones do;
all are optional:

===============  ================================================================  =======================
attribute        what it says                                                      used by
===============  ================================================================  =======================
``field``        the name of the one array the kernel returns (default ``value``)  dataset, ``--field``
``long_name``    what its field is, or a dict of that by field name                dataset, colorbar
``units``        the unit of its field, or a dict of units by field name           dataset, colorbar
``axis_units``   a dict of units by axis name, for axes that ``--unit`` gives none  dataset, figure axes
``axis_unit``    one unit for every such axis (older kernels)                      dataset, figure axes
``title``        what the kernel computes, in a few words                          figures, dataset
``references``   where its formula comes from                                      dataset
``label``        a colorbar label, when ``long_name [units]`` will not do          figures
``markers``      named points on a map, ``(name, {axis: value, ...})``, drawn      figures
                 when the figure's two axes are among those named
===============  ================================================================  =======================

A kernel that returns a dict of arrays names its fields by the dict's keys (the probe fixes them:
:attr:`jobrunner.plan.Plan.fields`).  ``--unit NAME=UNIT`` beats the kernel, for an axis or a field.

The probe reads these attributes once, checks them (:func:`describe_kernel`) and the plan keeps
what they say (``Plan.result``), so that ``reduce``, ``status`` and the figures never import the
kernel: a machine without the kernel's own dependencies can stitch and draw its tiles.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass
from typing import Any

from jobrunner.errors import JobRunnerError
from jobrunner.kernels import Kernel, kernel_parameters, load_kernel
from jobrunner.plan import Plan, check_field_name

#: The name of the one field of a kernel that returns an array and has no ``field`` attribute.
DEFAULT_FIELD = "value"
#: Names no field or axis may take: the dataset's mask of computed cells has this one.
RESERVED_NAMES = ("complete",)
#: The longest text an attribute may hold (a title, a unit); references may be longer.
MAX_TEXT, MAX_REFERENCES = 200, 2000
#: The most markers a kernel may draw.
MAX_MARKERS = 1000


@dataclass(frozen=True)
class Field:
    """One field of a plan's result: its name (the dataset's variable), what it is, and its unit."""

    name: str
    long_name: str = ""
    units: str = ""
    label_text: str = ""  # a kernel's own colorbar label, if it gave one

    @property
    def label(self) -> str:
        """``vertical gravity anomaly [mGal]``: what a colorbar says."""
        if self.label_text:
            return self.label_text
        what = self.long_name or self.name
        return f"{what} [{self.units}]" if self.units else what


# -- reading a kernel's attributes, at planning time ------------------------------------------------
def describe_kernel(kernel: Kernel, name: str, fields: tuple[str, ...], axes: tuple[str, ...] = ()) -> dict[str, Any]:
    """What ``kernel`` (planned as ``name`` over ``axes``, returning ``fields``, () for one array)
    says of its result, checked, and the defaults of the parameters it takes: the plan keeps this
    (``Plan.result``).  A malformed attribute is refused here, at ``plan``, not after every tile
    is computed."""

    def attribute(key: str, default=None):
        return getattr(kernel, key, default)

    def text(value, what: str, limit: int = MAX_TEXT) -> str:
        if value is None:
            return ""
        if not isinstance(value, str) or "\n" in value or len(value) > limit:
            raise JobRunnerError(f"kernel {name}: its {what} must be one line of at most {limit} characters")
        return value

    def by_field(key: str) -> dict[str, str]:
        value = attribute(key)
        if isinstance(value, dict):
            return {str(field): text(value.get(field), f"{key} of {field}") for field in fields or (single,)}
        return {single: text(value, key)} if not fields else {}

    single = text(attribute("field", DEFAULT_FIELD), "field")
    if not fields:
        check_field_name(single, f"kernel {name}: its field attribute")
    long_names, units = by_field("long_name"), by_field("units")
    axis_units = attribute("axis_units", {})
    if not isinstance(axis_units, dict):
        raise JobRunnerError(f"kernel {name}: its axis_units must be a dict of units by axis name")
    return {
        "title": text(attribute("title"), "title"),
        "references": text(attribute("references"), "references", MAX_REFERENCES),
        "label": text(attribute("label"), "label") if not fields else "",
        "fields": [
            {"name": field, "long_name": long_names.get(field, ""), "units": units.get(field, "")}
            for field in fields or (single,)
        ],
        "axis_unit": text(attribute("axis_unit"), "axis_unit"),
        "axis_units": {str(axis): text(unit, f"axis_units of {axis}") for axis, unit in axis_units.items()},
        "markers": _markers(attribute("markers", ()), name),
        "defaults": _defaults(kernel, axes),
    }


def _defaults(kernel: Kernel, axes: tuple[str, ...]) -> dict[str, Any]:
    """The kernel's parameters' defaults, as JSON keeps them (others by their repr): provenance."""
    taken = kernel_parameters(kernel, axes) or {}
    found = {name: value for name, value in taken.items() if value is not inspect.Parameter.empty}
    return json.loads(json.dumps(found, default=repr))


def _markers(markers, name: str) -> list:
    usage = f"kernel {name}: its markers must be (name, {{axis: value, ...}}) pairs, at most {MAX_MARKERS}"
    try:
        checked = []
        for label, where in list(markers)[: MAX_MARKERS + 1]:
            if not isinstance(label, str) or not isinstance(where, dict):
                raise ValueError(label)
            coordinates = {str(axis): float(value) for axis, value in where.items()}
            if not all(math.isfinite(v) for v in coordinates.values()):
                raise ValueError(where)
            checked.append([label[:MAX_TEXT], coordinates])
    except (TypeError, ValueError):
        raise JobRunnerError(usage) from None
    if len(checked) > MAX_MARKERS:
        raise JobRunnerError(usage)
    return checked


def check_names(plan: Plan) -> None:
    """Refuse names that clash (a field and an axis, or either and the dataset's mask) and
    ``--unit``s that name no axis or field."""
    names = field_names(plan)
    clash = sorted(set(names) & set(plan.grid.names))
    if clash:
        raise JobRunnerError(
            f"kernel {plan.kernel} returns a field named {', '.join(clash)}, which is also the name of an axis: "
            "rename one of them"
        )
    reserved = sorted((set(names) | set(plan.grid.names)) & set(RESERVED_NAMES))
    if reserved:
        raise JobRunnerError(
            f"{', '.join(reserved)} is the name of the dataset's mask of computed cells: name the axis or field "
            "otherwise"
        )
    unknown = sorted(set(plan.units) - set(names))
    if unknown:
        raise JobRunnerError(
            f"--unit names no axis or field: {', '.join(unknown)} (the axes are {', '.join(plan.grid.names)}; "
            f"the fields {', '.join(names)})"
        )


# -- what the plan records, as the figures and the dataset use it -----------------------------------
def _described(plan: Plan) -> dict[str, Any]:
    """The plan's record of its kernel's attributes (read from the kernel for a plan not probed)."""
    if plan.result:
        return plan.result
    return describe_kernel(load_kernel(plan.kernel, plan.kernel_folder), plan.kernel, plan.fields, plan.grid.names)


def field_names(plan: Plan) -> tuple[str, ...]:
    """The result's fields: the probe's names for a dict kernel, else the one array's name."""
    return plan.fields or (str(_described(plan)["fields"][0]["name"]),)


def fields(plan: Plan) -> tuple[Field, ...]:
    """Every field of the result, with its long name and unit (``--unit`` first, then the kernel's)."""
    described = _described(plan)
    label = described.get("label", "")
    return tuple(
        Field(
            field["name"],
            field["long_name"],
            plan.units.get(field["name"]) or field["units"],
            label if label and not plan.units.get(field["name"]) else "",
        )
        for field in described["fields"]
    )


def field(plan: Plan, name: str | None = None) -> Field:
    """The field called ``name`` (the first if None); an unknown name is refused with the valid ones."""
    known = fields(plan)
    if name is None:
        return known[0]
    for candidate in known:
        if candidate.name == name:
            return candidate
    raise JobRunnerError(f"the result has no field {name!r}: its fields are {', '.join(f.name for f in known)}")


def axis_unit(plan: Plan, index: int) -> str:
    """An axis's unit: its own (``--unit``), else the kernel's for that axis."""
    axis = plan.grid.axes[index]
    described = _described(plan)
    return axis.unit or described["axis_units"].get(axis.name) or described["axis_unit"]


def axis_label(plan: Plan, index: int) -> str:
    """``depth [m]``: an axis's name and unit."""
    unit = axis_unit(plan, index)
    name = plan.grid.axes[index].name
    return f"{name} [{unit}]" if unit else name


def title(plan: Plan) -> str:
    """What the kernel computes, in a few words (its ``title``, else its name)."""
    return _described(plan)["title"] or plan.kernel


def references(plan: Plan) -> str:
    return _described(plan)["references"]


def parameters(plan: Plan) -> dict[str, Any]:
    """Every parameter the kernel ran with: the plan's, and the kernel's defaults for the others."""
    return {**_described(plan).get("defaults", {}), **plan.params}


def markers(plan: Plan, first: str, second: str) -> list[tuple[str, float, float]]:
    """The kernel's markers that stand on a map of the axes ``first`` and ``second``."""
    return [
        (name, where[first], where[second])
        for name, where in _described(plan)["markers"]
        if first in where and second in where
    ]
