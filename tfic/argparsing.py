"""The argument parser of every tfic command line (``tfic``, ``python -m <service>``).

Three differences from :class:`argparse.ArgumentParser`, each a defect users met:

* **No abbreviations** (``allow_abbrev=False``): ``--epoch 1`` was silently taken as ``--epochs``, and a
  mistyped ``--learning_rat`` as ``--learning_rate``. A word that is not a flag is an error.
* **"did you mean"**: an unknown flag names the closest one, as a mistyped hyperparameter in a JSON file does.
* **Options anywhere among the positionals** of a command without sub-commands (``tfic predict MODEL --top-k 3
  a.jpg b.jpg``), parsed as :meth:`argparse.ArgumentParser.parse_intermixed_args` does.

Sub-command parsers are made of the same class (argparse builds them with ``type(parent)``), so a command gets
all three by building its parser from this one.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import Any, NoReturn


class ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._intermixing = False

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads; same behaviour
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:  # parse_known_intermixed_args calls back here for each of its two passes
            return super().parse_known_args(args, namespace)
        if self._can_intermix():
            self._intermixing = True
            try:
                parsed, extras = super().parse_known_intermixed_args(args, namespace)
            finally:
                self._intermixing = False
        else:
            parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.unrecognized(extras)
        return parsed, extras

    def _can_intermix(self) -> bool:
        # argparse refuses to intermix around sub-commands and REMAINDER positionals.
        return not any(a.nargs in (argparse.PARSER, argparse.REMAINDER) for a in self._actions)

    def unrecognized(self, extras: list[str]) -> NoReturn:
        options = sorted(o for o in self._option_string_actions if o.startswith("--"))
        hints = []
        for word in extras:
            flag = word.split("=", 1)[0]
            if flag.startswith("--"):
                close = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
                if close:
                    hints.append(f"{flag}: did you mean {close[0]}?")
        self.error(f"unrecognized arguments: {' '.join(extras)}" + ("; " + "; ".join(hints) if hints else ""))


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after a flag's help, unless there is no default to show or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is argparse.SUPPRESS or "default" in text:
            return text
        return super()._get_help_string(action)
