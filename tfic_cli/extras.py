"""Which extra to install when a command's third-party dependency is missing.

Each service installs alone from its extra (``pip install 'tfic[gateway]'``), so a command of
another one can meet a missing package; the CLI then names the extra instead of a traceback.
"""

from __future__ import annotations

from tfic.errors import TficError

# tfic's own top-level packages: one of them missing is a broken install, not a missing extra.
OWN_PACKAGES = frozenset({"tfic", "tfic_cli", "tfic_demo", "trainer_svc", "inference_svc", "gateway"})


class MissingExtra(TficError):
    """A command's third-party dependency is not installed: its extra was not."""


def missing_extra(extra: str, exc: ModuleNotFoundError) -> MissingExtra | None:
    """The error to show when ``exc`` means ``extra`` is missing (``None`` when the module is tfic's own)."""
    root = (exc.name or "").split(".")[0]
    if not root or root in OWN_PACKAGES:
        return None
    return MissingExtra(f"the package {root!r} is not installed; it comes with pip install 'tfic[{extra}]'")
