"""One declaration per setting: its flag, its ``TFIC_`` environment variable, its ``--help`` line, its row in
docs/configuration.md and its typed value all come from one field of a frozen dataclass.

A service declares its settings once::

    @dataclass(frozen=True)
    class GatewaySettings:
        ENV_PREFIX: ClassVar[str] = "TFIC_GATEWAY_"
        port: int = setting(8080, "HTTP port (0: any free port)", minimum=0, maximum=65535)

        def __post_init__(self) -> None:
            check(self)  # the declared ranges and choices, also for objects built in code

:func:`add_arguments` adds ``--port`` (help ``HTTP port (0: any free port) (default: 8080) [env
TFIC_GATEWAY_PORT]``) and :func:`from_args` builds the object at the entry point: the flag when given, else
the variable when set and not empty, else the default. A malformed flag is argparse's error (exit 2); a
malformed variable is an :class:`~tfic.errors.InvalidArgument` naming the variable and its flag, which every
entry point turns into exit 2. Nothing reads the environment at import time or while the parser is built, so
``--help`` works whatever the environment holds.

The flag is ``--<field-name>`` and the variable ``ENV_PREFIX + FLAG_NAME`` unless the field says otherwise;
the type comes from the annotation (str, int, float, bool, Path, ``X | None``, ``tuple[X, ...]`` as a
comma-separated list) unless ``parse`` is given. A field made by :func:`nested` holds a dataclass whose own
fields are settings with the outer class's prefix. Fields made by plain ``field()`` are not settings (values
the entry point or the tests compute).
"""

from __future__ import annotations

import argparse
import os
import re
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from tfic.errors import InvalidArgument

ENV_PREFIX = "TFIC_"
_META = "tfic.setting"
_NESTED = "tfic.nested"
T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """What a field declares beyond its type and default (see :func:`setting`)."""

    help: str
    flag: str | None = None
    env: str | None = None
    parse: Callable[[str], Any] | None = None
    kind: str | None = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # an exclusive minimum (``above=0``: positive)
    group: str = ""
    default_text: str | None = None
    repeatable: bool = False
    metavar: str | None = None


def setting(
    default: Any = None,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    flag: str | None = None,
    env: str | None = None,
    parse: Callable[[str], Any] | None = None,
    kind: str | None = None,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    group: str = "",
    default_text: str | None = None,
    repeatable: bool = False,
    metavar: str | None = None,
) -> Any:
    """A dataclass field that is a setting.

    ``factory`` computes the default when the object is built (e.g. the machine's cores); ``default_text``
    then says what it is in ``--help`` and the docs. ``flag`` and ``env`` override the names derived from the
    field. ``parse`` turns the text of a flag or variable into the value (a ValueError or InvalidArgument
    says why it is wrong) and ``kind`` names its type in the docs. ``repeatable`` lets the flag be given
    more than once, its values adding up (the variable is comma-separated).
    """
    meta = Setting(
        help, flag, env, parse, kind, choices, minimum, maximum, above, group, default_text, repeatable, metavar
    )
    if factory is not None:
        return field(default_factory=factory, metadata={_META: meta})
    return field(default=default, metadata={_META: meta})


def nested(factory: Callable[[], Any]) -> Any:
    """A field holding a dataclass of settings (e.g. the inference service's batching)."""
    return field(default_factory=factory, metadata={_NESTED: True})


@dataclass(frozen=True)
class Declared:
    """One setting as the parser, the environment and the docs see it."""

    path: tuple[str, ...]  # field names from the outer class down (``("batching", "max_batch_size")``)
    flag: str
    env: str
    kind: str
    default: str  # as shown; "" when there is none
    help: str
    group: str
    choices: tuple[str, ...]
    bounds: str  # e.g. "≥ 1", as the docs print it
    is_bool: bool
    repeatable: bool
    metavar: str | None
    convert: Callable[[str], Any]  # text → checked value; raises argparse.ArgumentTypeError

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    def help_line(self, default: str | None = None) -> str:
        shown = self.default if default is None else default
        text = self.help + (f" (default: {shown})" if shown else "") + f" [env {self.env}]"
        return text.replace("%", "%%")  # argparse %-formats help strings


def declarations(cls: type) -> list[Declared]:
    """Every setting of ``cls`` (nested ones included), in declaration order."""
    prefix = getattr(cls, "ENV_PREFIX", None)
    if not isinstance(prefix, str) or not prefix.startswith(ENV_PREFIX):
        raise TypeError(f"{cls.__name__} needs ENV_PREFIX: ClassVar[str] starting with {ENV_PREFIX!r}")
    return list(_walk(cls, prefix, ()))


def _walk(cls: type, prefix: str, path: tuple[str, ...]) -> Iterator[Declared]:
    hints = get_type_hints(cls)
    for f in fields(cls):
        if f.metadata.get(_NESTED):
            inner = _plain(hints[f.name])
            yield from _walk(inner, getattr(inner, "ENV_PREFIX", prefix), (*path, f.name))
            continue
        meta = f.metadata.get(_META)
        if isinstance(meta, Setting):
            yield _declare(f, meta, hints[f.name], prefix, (*path, f.name))


def _declare(f: Field[Any], meta: Setting, hint: Any, prefix: str, path: tuple[str, ...]) -> Declared:
    flag = meta.flag or "--" + f.name.replace("_", "-")
    env = meta.env or prefix + flag[2:].replace("-", "_").upper()
    parse, kind = (meta.parse, meta.kind or "str") if meta.parse else _type_of(hint)
    if meta.kind:
        kind = meta.kind
    is_bool = _plain(hint) is bool and meta.parse is None
    shown = "" if f.default is MISSING else show(f.default)
    default = meta.default_text if meta.default_text is not None else shown
    decl_checks = _Checks.of(meta)

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except InvalidArgument as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
        except (ValueError, TypeError):
            raise argparse.ArgumentTypeError(f"expected {_article(kind)}, got {text!r}") from None
        problem = decl_checks.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return Declared(
        path, flag, env, kind, default, meta.help, meta.group, meta.choices, decl_checks.describe(), is_bool,
        meta.repeatable, meta.metavar, convert,
    )  # fmt: skip


@dataclass(frozen=True)
class _Checks:
    choices: tuple[str, ...]
    minimum: float | None
    maximum: float | None
    above: float | None

    @classmethod
    def of(cls, meta: Setting) -> _Checks:
        return cls(meta.choices, meta.minimum, meta.maximum, meta.above)

    def describe(self) -> str:
        """The bounds as the docs print them (``≥ 1``, ``0–65535``, ``> 0``)."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"{show(low)}–{show(high)}"
        parts = [f"≥ {show(low)}" if low is not None else "", f"≤ {show(high)}" if high is not None else ""]
        parts.append(f"> {show(self.above)}" if self.above is not None else "")
        return ", ".join(p for p in parts if p)

    def problem(self, value: Any) -> str:
        """Why ``value`` is out of bounds ("" when it is not)."""
        if value is None:
            return ""
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}; got {value!r}"
        low, high = self.minimum, self.maximum
        if isinstance(value, int | float) and not isinstance(value, bool):
            if low is not None and high is not None and not low <= value <= high:
                return f"must be between {show(low)} and {show(high)}, got {show(value)}"
            if low is not None and value < low:
                return f"must be at least {show(low)}, got {show(value)}"
            if high is not None and value > high:
                return f"must be at most {show(high)}, got {show(value)}"
            if self.above is not None and value <= self.above:
                bound = "positive" if self.above == 0 else f"above {show(self.above)}"
                return f"must be {bound}, got {show(value)}"
        return ""


def check(obj: Any) -> None:
    """Refuse ``obj`` if one of its own settings is outside its declared choices or range.

    Called from ``__post_init__``, so an object built in code is held to the same bounds as one built from
    flags and variables.
    """
    for f in fields(obj):
        meta = f.metadata.get(_META)
        if isinstance(meta, Setting):
            flag = meta.flag or "--" + f.name.replace("_", "-")
            problem = _Checks.of(meta).problem(getattr(obj, f.name))
            if problem:
                raise InvalidArgument(f"{flag} {problem}")


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, defaults: Mapping[str, Any] | None = None) -> None:
    """Add a flag for every setting of ``cls`` to ``parser`` (argument groups by the settings' ``group``).

    ``defaults`` (by dest) replaces declared defaults for this parser; pass the same to :func:`from_args`.
    Flags left out of the command line are absent from the parsed namespace, which is how
    :func:`from_args` tells "not given" from "given the default's value".
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for d in declarations(cls):
        target: argparse.ArgumentParser | argparse._ArgumentGroup = parser
        if d.group:
            if d.group not in groups:
                groups[d.group] = parser.add_argument_group(d.group)
            target = groups[d.group]
        shown = show(defaults[d.dest]) if defaults and d.dest in defaults else None
        kwargs: dict[str, Any] = {"dest": d.dest, "default": argparse.SUPPRESS, "help": d.help_line(shown)}
        if d.is_bool:
            target.add_argument(d.flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        metavar = d.metavar or ("{" + ",".join(d.choices) + "}" if d.choices else None)
        if d.repeatable:
            target.add_argument(d.flag, action="extend", type=d.convert, metavar=metavar, **kwargs)
        else:
            target.add_argument(d.flag, type=d.convert, metavar=metavar, **kwargs)


def resolve(
    cls: type,
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
) -> list[tuple[Declared, Any, str]]:
    """Each setting of ``cls`` with its value and where it came from (``flag``, ``env`` or ``default``).

    The default's value is the declared one (``None`` for a computed default: the dataclass computes it).
    """
    environ = os.environ if environ is None else environ
    given = vars(args)
    resolved: list[tuple[Declared, Any, str]] = []
    for d in declarations(cls):
        if d.dest in given:
            value = given[d.dest]
            resolved.append((d, tuple(value) if d.repeatable else value, "flag"))
        elif environ.get(d.env, "").strip():
            resolved.append((d, _from_env(d, environ[d.env]), "env"))
        elif defaults and d.dest in defaults:
            resolved.append((d, defaults[d.dest], "default"))
        else:
            resolved.append((d, _declared_default(cls, d.path), "default"))
    return resolved


def from_args(
    cls: type[T],
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
) -> T:
    """The settings object: each setting from its flag, else its variable, else its default.

    A value that fails the class's own checks (``__post_init__``) is an InvalidArgument whose message also
    names the variable of every flag it mentions that was set from the environment.
    """
    resolved = resolve(cls, args, environ, defaults=defaults)
    # Declared defaults are left to the dataclass, which also computes the factories' ones.
    chosen = {d.path: value for d, value, source in resolved if source != "default" or d.dest in (defaults or {})}
    try:
        built: T = _construct(cls, chosen)
    except InvalidArgument as exc:
        from_env = [d for d, _, source in resolved if source == "env" and _mentions(exc.message, d.flag)]
        if not from_env:
            raise
        notes = "; ".join(f"{d.flag} was set by {d.env}" for d in from_env)
        raise InvalidArgument(f"{exc.message} ({notes})") from None
    return built


def _construct(cls: type[T], values: Mapping[tuple[str, ...], Any]) -> T:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.metadata.get(_NESTED):
            inner = {path[1:]: v for path, v in values.items() if path[0] == f.name}
            kwargs[f.name] = _construct(_plain(hints[f.name]), inner)
        elif (f.name,) in values:
            kwargs[f.name] = values[(f.name,)]
    return cls(**kwargs)


def _from_env(d: Declared, raw: str) -> Any:
    if d.is_bool:
        try:
            return parse_bool(raw)
        except ValueError as exc:
            raise InvalidArgument(f"environment variable {d.env}={raw!r} ({d.flag}): {exc}") from None
    try:
        if d.repeatable:
            return tuple(v for part in raw.split(",") if part.strip() for v in d.convert(part.strip()))
        return d.convert(raw.strip())
    except argparse.ArgumentTypeError as exc:
        raise InvalidArgument(f"environment variable {d.env}={raw!r} ({d.flag}): {exc}") from None


def _declared_default(cls: type, path: tuple[str, ...]) -> Any:
    for name in path[:-1]:
        cls = _plain(get_type_hints(cls)[name])
    f = next(f for f in fields(cls) if f.name == path[-1])
    return None if f.default is MISSING else f.default


def _mentions(message: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", message) is not None


# ------------------------------------------------------------------------------------------ values and types


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def show(value: Any) -> str:
    """A value as ``--help`` and the docs print it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(show(v) for v in value)
    return str(value)


def _plain(hint: Any) -> Any:
    """``X | None`` → ``X``."""
    if get_origin(hint) in (Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return hint


_SCALARS: dict[Any, tuple[Callable[[str], Any], str]] = {
    str: (str, "str"),
    int: (int, "int"),
    float: (float, "float"),
    bool: (parse_bool, "bool"),
    Path: (Path, "path"),
}


def _type_of(hint: Any) -> tuple[Callable[[str], Any], str]:
    """How to parse a value of this annotation, and the type's name in the docs."""
    hint = _plain(hint)
    if hint in _SCALARS:
        return _SCALARS[hint]
    args = get_args(hint)
    if get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
        item, name = _SCALARS[args[0]]

        def items(text: str) -> tuple[Any, ...]:
            return tuple(item(v.strip()) for v in text.split(",") if v.strip())

        return items, f"{name} list"
    if is_dataclass(hint):
        raise TypeError(f"declare {hint!r} with nested(), or give parse=")
    raise TypeError(f"no parser for {hint!r}: give parse= and kind=")


def _article(kind: str) -> str:
    names = {"int": "an integer", "float": "a number", "path": "a path", "int list": "comma-separated integers"}
    return names.get(kind, f"a {kind}")


# ------------------------------------------------------------------------------------------ documentation


def markdown_table(cls: type, *, defaults: Mapping[str, Any] | None = None) -> str:
    """docs/configuration.md's table of ``cls``'s settings (scripts/gen_config_docs.py)."""
    rows = ["| flag | environment variable | type | default | what it does |", "|---|---|---|---|---|"]
    for d in declarations(cls):
        flag = f"`{d.flag}` / `--no-{d.flag[2:]}`" if d.is_bool else f"`{d.flag}`"
        if d.repeatable:
            flag += " (repeatable)"
        kind = "one of " + ", ".join(f"`{c}`" for c in d.choices) if d.choices else d.kind
        if d.bounds:
            kind += f", {d.bounds}"
        default = show(defaults[d.dest]) if defaults and d.dest in defaults else d.default
        # A default given as prose (a computed one) is not code.
        shown = (f"`{default}`" if " " not in default else _markdown(default)) if default else "—"
        cells = [flag, f"`{d.env}`", kind, shown, _markdown(d.help)]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def _markdown(text: str) -> str:
    """Plain help text in a Markdown cell: ``<name>`` is no HTML tag, ``*/*`` no emphasis."""
    return text.replace("<", "\\<").replace("*", "\\*")
