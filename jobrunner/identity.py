"""Who a plan is and what code computes it: plan ids, kernel code fingerprints, versions.

A plan id is made once, when ``jobrunner plan`` publishes the plan; it names the plan's own
folders (see :mod:`jobrunner.publish`), so nothing written for one plan can be mistaken for
another's.  A code fingerprint is a hash of the source of the module that defines the kernel
(both, if the function lives in another module than the one the plan names): a kernel edited
after planning gives another fingerprint, which workers refuse and ``plan`` reports.  Code the
kernel imports from other modules is not hashed; the versions of Python, NumPy and jobrunner
that computed each tile are recorded beside it instead.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import platform
import re
import secrets
import time
from functools import lru_cache

from jobrunner.errors import JobRunnerError
from jobrunner.kernels import kernel_reference, load_kernel

#: Hex digits of the sha256 kept in a fingerprint: enough that two versions never collide by chance.
FINGERPRINT_DIGITS = 16


#: What :func:`new_plan_id` makes.  A plan id names folders, so nothing else is accepted from a file.
PLAN_ID_PATTERN = re.compile(r"\d{8}-\d{6}-[0-9a-f]{8}")


def new_plan_id(now: float | None = None) -> str:
    """``YYYYmmdd-HHMMSS-<8 hex>``: sorts by planning time, and unique (32 random bits per second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(4)}"


def code_fingerprint(kernel: str, folder: str = "") -> str:
    """``sha256:<hex>`` of the source of the module(s) defining ``kernel``, as this process imports it
    (``folder``: where the plan found its module, see :func:`jobrunner.kernels.local_kernel_folder`)."""
    module_name = kernel_reference(kernel).partition(":")[0]
    function = load_kernel(kernel, folder)
    modules = [importlib.import_module(module_name)]
    defining = inspect.getmodule(function)
    if defining is not None and defining is not modules[0]:
        modules.append(defining)
    digest = hashlib.sha256(kernel_reference(kernel).encode())
    for module in modules:
        source = _module_bytes(module, kernel)
        # The code that runs is what this process imported, which may be older than the file: a
        # long-lived Dask or MPI worker keeps a module across plans.  Remember each module's
        # source as first seen here, and refuse if the file has changed since.
        first = _first_seen.setdefault(module.__name__, hashlib.sha256(source).hexdigest())
        if first != hashlib.sha256(source).hexdigest():
            raise JobRunnerError(
                f"kernel {kernel}: its module {module.__name__} changed on disk since this process imported it, "
                "so the code this process would run is not the file's: restart it (Dask and MPI workers, "
                "Python sessions) to use the new code"
            )
        digest.update(b"\0" + source)
    return f"sha256:{digest.hexdigest()[:FINGERPRINT_DIGITS]}"


#: Each kernel module's source hash as this process first saw it (see code_fingerprint).
_first_seen: dict[str, str] = {}


def _module_bytes(module, kernel: str) -> bytes:
    path = getattr(module, "__file__", None)
    if path is None:  # a built-in or namespace module: nothing on disk to hash but its name
        return module.__name__.encode()
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise JobRunnerError(f"kernel {kernel}: cannot read its module {path} to fingerprint it ({error})") from None


@lru_cache(maxsize=1)
def versions() -> str:
    """What computed a tile, besides the kernel's own code: ``python 3.11.7, numpy 2.4.6, jobrunner 0.1.0``."""
    import numpy

    try:
        from importlib.metadata import version

        ours = version("jobrunner")
    except Exception:  # not installed (run from a source tree): say so rather than fail a tile
        ours = "unknown"
    return f"python {platform.python_version()}, numpy {numpy.__version__}, jobrunner {ours}"
