"""What a plan's result is called and measured in: its fields, their names and units, its axes' labels.

A kernel may describe its result with attributes set on the function, as the built-in ones do;
all are optional:

===============  ================================================================  =======================
attribute        what it says                                                      used by
===============  ================================================================  =======================
``field``        the name of the one array the kernel returns (default ``value``)  dataset, ``--field``
``long_name``    what its field is, or a dict of that by field name                dataset, colorbar
``units``        the unit of its field, or a dict of units by field name           dataset, colorbar
``axis_unit``    the unit of every axis that ``--unit`` gives none                 dataset, figure axes
``title``        what the kernel computes, in a few words                          figures, dataset
``references``   where its formula comes from                                      dataset
``label``        a colorbar label, when ``long_name [units]`` will not do          figures
``markers``      named points ``(name, first axis, second axis)`` to mark          map figures
===============  ================================================================  =======================

A kernel that returns a dict of arrays names its fields by the dict's keys (the probe fixes them:
:attr:`jobrunner.plan.Plan.fields`).  ``--unit NAME=UNIT`` beats the kernel, for an axis or a field.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobrunner.errors import JobRunnerError
from jobrunner.kernels import load_kernel
from jobrunner.plan import Plan

#: The name of the one field of a kernel that returns an array and has no ``field`` attribute.
DEFAULT_FIELD = "value"
#: Names a field may not take: the dataset's mask of computed cells has this one.
RESERVED_FIELDS = ("complete",)


@dataclass(frozen=True)
class Field:
    """One field of a plan's result: its name (the dataset's variable), what it is, and its unit."""

    name: str
    long_name: str = ""
    units: str = ""

    @property
    def label(self) -> str:
        """``vertical gravity anomaly [mGal]``: what a colorbar says."""
        what = self.long_name or self.name
        return f"{what} [{self.units}]" if self.units else what


def kernel_attribute(plan: Plan, name: str, default=None):
    return getattr(load_kernel(plan.kernel, plan.kernel_folder), name, default)


def _by_field(value, field: str, single: bool) -> str:
    """A kernel attribute that is one string (for a one-array kernel) or a dict by field name."""
    if isinstance(value, dict):
        return str(value.get(field, ""))
    return str(value) if single and value is not None else ""


def field_names(plan: Plan) -> tuple[str, ...]:
    """The result's fields: the probe's names for a dict kernel, else the one array's name."""
    return plan.fields or (str(kernel_attribute(plan, "field", DEFAULT_FIELD)),)


def fields(plan: Plan) -> tuple[Field, ...]:
    """Every field of the result, with its long name and unit (``--unit`` first, then the kernel's)."""
    single = not plan.fields
    long_names, units = kernel_attribute(plan, "long_name"), kernel_attribute(plan, "units")
    label = kernel_attribute(plan, "label") if single else None
    return tuple(
        Field(
            name,
            _by_field(long_names, name, single) or (str(label) if label and not units else ""),
            plan.units.get(name) or _by_field(units, name, single),
        )
        for name in field_names(plan)
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


def check_names(plan: Plan) -> None:
    """Refuse field names that clash with an axis or the dataset's mask, and ``--unit``s that name nothing."""
    names = field_names(plan)
    clash = sorted(set(names) & (set(plan.grid.names) | set(RESERVED_FIELDS)))
    if clash:
        raise JobRunnerError(
            f"kernel {plan.kernel} returns a field named {', '.join(clash)}, which is also the name of an axis "
            f"or of the dataset's mask ({', '.join(RESERVED_FIELDS)}): rename it"
        )
    unknown = sorted(set(plan.units) - set(names))
    if unknown:
        raise JobRunnerError(
            f"--unit names no axis or field: {', '.join(unknown)} (the axes are {', '.join(plan.grid.names)}; "
            f"the fields {', '.join(names)})"
        )


def axis_unit(plan: Plan, index: int) -> str:
    """An axis's unit: its own (``--unit``), else the kernel's ``axis_unit`` (the built-in sphere's axes are in m)."""
    return plan.grid.axes[index].unit or str(kernel_attribute(plan, "axis_unit", ""))


def axis_label(plan: Plan, index: int) -> str:
    """``depth [m]``: an axis's name and unit."""
    unit = axis_unit(plan, index)
    name = plan.grid.axes[index].name
    return f"{name} [{unit}]" if unit else name


def title(plan: Plan) -> str:
    """What the kernel computes, in a few words (its ``title``, else its name)."""
    return str(kernel_attribute(plan, "title", plan.kernel))
