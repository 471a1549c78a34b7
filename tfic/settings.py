"""Settings plumbing shared by the services: flags with ``TFIC_`` environment-variable defaults.

Each service defines one frozen dataclass of settings and builds it once at its entry point with
:func:`add_flag` / :func:`env`, so every setting is documented in ``--help`` with its variable.
Nothing reads the environment at import time.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import Any

from tfic.errors import InvalidArgument

ENV_PREFIX = "TFIC_"


def env_name(flag: str) -> str:
    """``--model-base-path`` → ``TFIC_MODEL_BASE_PATH``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise InvalidArgument(f"expected a boolean (true/false), got {text!r}")


def add_flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    *,
    type: Callable[[str], Any] = str,
    default: Any = None,
    help: str,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> None:
    """Add ``flag`` whose default comes from its environment variable when set, else ``default``.

    The variable is ``env`` if given (services running side by side need distinct ones, e.g.
    ``TFIC_INFERENCE_PORT``), else ``TFIC_<FLAG>``.
    """
    environ = os.environ if environ is None else environ
    var = env or env_name(flag)
    if var in environ:
        raw = environ[var]
        try:
            default = parse_bool(raw) if type is bool else type(raw)
        except (ValueError, InvalidArgument) as exc:
            raise InvalidArgument(f"environment variable {var}={raw!r} is invalid: {exc}") from None
    shown = "" if default in (None, "") else f" (default: {default})"
    if type is bool:
        parser.add_argument(
            flag, action=argparse.BooleanOptionalAction, default=default, help=f"{help}{shown} [env {var}]", **kwargs
        )
    else:
        parser.add_argument(flag, type=type, default=default, help=f"{help}{shown} [env {var}]", **kwargs)
