"""tfic.settings: one declaration gives the flag, the variable, --help and the typed, checked value."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import pytest

from tfic import logs
from tfic.entry import service_main
from tfic.errors import InvalidArgument
from tfic.settings import add_arguments, check, declarations, from_args, markdown_table, nested, setting

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Inner:
    size: int = setting(4, "inner size", minimum=1, group="inner")
    on: bool = setting(True, "inner switch", flag="--inner-on", group="inner")


@dataclass(frozen=True)
class Example:
    ENV_PREFIX: ClassVar[str] = "TFIC_EXAMPLE_"

    port: int = setting(8080, "a port", minimum=0, maximum=65535)
    ratio: float = setting(0.5, "a ratio", above=0)
    verbose: bool = setting(False, "talk more")
    path: Path | None = setting(None, "a file")
    sizes: tuple[int, ...] = setting((1, 2), "sizes")
    mode: str = setting("fast", "how", choices=("fast", "slow"))
    roots: tuple[Path, ...] = setting((), "roots", flag="--root", env="TFIC_ROOTS", repeatable=True)
    shared: str = setting("x", "a variable outside the prefix", env="TFIC_SHARED")
    inner: Inner = nested(Inner)
    computed: int = field(default=7)  # not a setting

    def __post_init__(self) -> None:
        check(self)
        if self.mode == "slow" and self.verbose:
            raise InvalidArgument("--mode slow and --verbose do not combine")


def parser_for(cls: type = Example) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="example")
    add_arguments(parser, cls)
    return parser


def build(argv: list[str], environ: dict[str, str]) -> Example:
    return from_args(Example, parser_for().parse_args(argv), environ)


def test_flag_beats_variable_beats_default() -> None:
    assert build([], {}) == Example()
    environ = {
        "TFIC_EXAMPLE_PORT": "9000",
        "TFIC_EXAMPLE_RATIO": "0.25",
        "TFIC_EXAMPLE_VERBOSE": "yes",
        "TFIC_EXAMPLE_PATH": "/tmp/a",
        "TFIC_EXAMPLE_SIZES": "2, 4,8",
        "TFIC_EXAMPLE_MODE": "fast",
        "TFIC_ROOTS": "/a,/b",
        "TFIC_SHARED": "y",
        "TFIC_EXAMPLE_SIZE": "16",
        "TFIC_EXAMPLE_INNER_ON": "false",
    }
    from_env = build([], environ)
    assert from_env == Example(
        port=9000, ratio=0.25, verbose=True, path=Path("/tmp/a"), sizes=(2, 4, 8), roots=(Path("/a"), Path("/b")),
        shared="y", inner=Inner(size=16, on=False),
    )  # fmt: skip
    argv = ["--port", "9001", "--no-verbose", "--sizes", "3", "--root", "/c", "--root", "/d", "--size", "5"]
    from_flags = build([*argv, "--inner-on"], environ)
    assert (from_flags.port, from_flags.verbose, from_flags.sizes) == (9001, False, (3,))
    assert from_flags.roots == (Path("/c"), Path("/d"))  # the flags replace the variable's list
    assert from_flags.inner == Inner(size=5, on=True)
    assert (from_flags.ratio, from_flags.shared) == (0.25, "y")  # not given as flags: still the variables'
    # A flag given with the default's value still beats the variable.
    assert build(["--port", "8080"], environ).port == 8080


def test_an_empty_variable_is_unset() -> None:
    assert build([], {"TFIC_EXAMPLE_PORT": "", "TFIC_EXAMPLE_PATH": "  "}) == Example()


@pytest.mark.parametrize(
    ("env", "raw", "why"),
    [
        ("TFIC_EXAMPLE_PORT", "eighty", "expected an integer, got 'eighty'"),
        ("TFIC_EXAMPLE_PORT", "70000", "must be between 0 and 65535, got 70000"),
        ("TFIC_EXAMPLE_RATIO", "0", "must be positive, got 0.0"),
        ("TFIC_EXAMPLE_VERBOSE", "maybe", "expected true or false, got 'maybe'"),
        ("TFIC_EXAMPLE_SIZES", "1,x", "expected comma-separated integers, got '1,x'"),
        ("TFIC_EXAMPLE_MODE", "medium", "must be one of fast, slow; got 'medium'"),
        ("TFIC_EXAMPLE_SIZE", "0", "must be at least 1, got 0"),
    ],
)
def test_a_bad_variable_names_itself_and_its_flag(env: str, raw: str, why: str) -> None:
    flag = next(d.flag for d in declarations(Example) if d.env == env)
    with pytest.raises(InvalidArgument) as caught:
        build([], {env: raw})
    assert caught.value.message == f"environment variable {env}={raw!r} ({flag}): {why}"


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--port", "eighty"], "argument --port: expected an integer, got 'eighty'"),
        (["--port", "-1"], "argument --port: must be between 0 and 65535, got -1"),
        (["--mode", "medium"], "argument --mode: must be one of fast, slow; got 'medium'"),
    ],
)
def test_a_bad_flag_is_argparse_s_error(argv: list[str], why: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser_for().parse_args(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"example: error: {why}"


def test_a_combination_refused_by_the_class_names_the_variables_that_set_it() -> None:
    with pytest.raises(InvalidArgument) as caught:
        build(["--mode", "slow"], {"TFIC_EXAMPLE_VERBOSE": "1"})
    assert (
        caught.value.message == "--mode slow and --verbose do not combine (--verbose was set by TFIC_EXAMPLE_VERBOSE)"
    )
    with pytest.raises(InvalidArgument) as caught:
        build(["--mode", "slow", "--verbose"], {})
    assert caught.value.message == "--mode slow and --verbose do not combine"
    with pytest.raises(InvalidArgument, match=r"^--port must be between 0 and 65535, got 70000$"):
        Example(port=70000)  # built in code: the same bounds


def test_help_shows_each_flag_with_its_default_and_variable() -> None:
    text = " ".join(parser_for().format_help().split())
    for d in declarations(Example):
        assert d.flag in text
        shown = f"(default: {d.default}) " if d.default else ""
        assert f"{d.help} {shown}[env {d.env}]" in text
    assert "--verbose, --no-verbose" in text
    assert "{fast,slow}" in text
    assert "inner:" in text  # the group
    assert "computed" not in text


def test_help_and_the_parser_do_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFIC_EXAMPLE_PORT", "not a port")
    args = parser_for().parse_args([])
    assert vars(args) == {}  # nothing given: every setting is resolved later, by from_args
    with pytest.raises(InvalidArgument, match="TFIC_EXAMPLE_PORT"):
        from_args(Example, args)  # os.environ, read now


def test_declarations_need_a_prefix_and_a_known_type() -> None:
    @dataclass(frozen=True)
    class NoPrefix:
        port: int = setting(1, "p")

    with pytest.raises(TypeError, match="ENV_PREFIX"):
        declarations(NoPrefix)

    @dataclass(frozen=True)
    class Odd:
        ENV_PREFIX: ClassVar[str] = "TFIC_ODD_"
        value: complex = setting(1j, "c")

    with pytest.raises(TypeError, match="give parse="):
        declarations(Odd)


def test_the_docs_table_has_a_row_per_setting() -> None:
    table = markdown_table(Example).splitlines()
    assert table[0] == "| flag | environment variable | type | default | what it does |"
    assert len(table) == 2 + len(declarations(Example))
    assert "| `--port` | `TFIC_EXAMPLE_PORT` | int, 0–65535 | `8080` | a port |" in table
    assert "| `--verbose` / `--no-verbose` | `TFIC_EXAMPLE_VERBOSE` | bool | `false` | talk more |" in table
    assert "| `--root` (repeatable) | `TFIC_ROOTS` | path list | — | roots |" in table
    assert "| `--mode` | `TFIC_EXAMPLE_MODE` | one of `fast`, `slow` | `fast` | how |" in table


def test_log_settings_are_one_declaration_with_per_command_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, logs.LogSettings, defaults={"log_level": "warning"})
    assert "(default: warning) [env TFIC_LOG_LEVEL]" in " ".join(parser.format_help().split())
    args = parser.parse_args([])
    assert from_args(logs.LogSettings, args, {}, defaults={"log_level": "warning"}).level == "warning"
    assert from_args(logs.LogSettings, args, {}).level == "info"
    built = from_args(logs.LogSettings, args, {"TFIC_LOG_LEVEL": "DEBUG", "TFIC_LOG_FORMAT": "json"})
    assert built == logs.LogSettings(level="debug", format="json")


def test_a_service_entry_point_exits_2_on_a_bad_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[Example] = []

    def run(settings: Example) -> int:
        ran.append(settings)
        return 0

    monkeypatch.setenv("TFIC_EXAMPLE_PORT", "9000")
    assert service_main("example", "an example", Example, run, ["--size", "3"]) == 0
    assert ran == [Example(port=9000, inner=Inner(size=3))]
    monkeypatch.setenv("TFIC_EXAMPLE_RATIO", "-1")
    assert service_main("example", "an example", Example, lambda s: 0, []) == 2
    err = capsys.readouterr().err
    assert err == "example: error: environment variable TFIC_EXAMPLE_RATIO='-1' (--ratio): must be positive, got -1.0\n"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["serve", "gateway"], {"TFIC_GATEWAY_PORT": "http"}, "environment variable TFIC_GATEWAY_PORT='http' (--port)"),
        (["serve", "inference"], {"TFIC_INFERENCE_MAX_BATCH_SIZE": "0"}, "TFIC_INFERENCE_MAX_BATCH_SIZE='0'"),
        (["serve", "trainer"], {"TFIC_TRAINER_MAX_ATTEMPTS": "many"}, "TFIC_TRAINER_MAX_ATTEMPTS='many'"),
        (["jobs", "list"], {"TFIC_TRAINER_TLS": "perhaps"}, "TFIC_TRAINER_TLS='perhaps' (--tls)"),
        (["serve", "gateway"], {"TFIC_LOG_FORMAT": "xml"}, "TFIC_LOG_FORMAT='xml' (--log-format)"),
    ],
)
def test_tfic_exits_2_naming_a_bad_variable(argv: list[str], env: dict[str, str], message: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TFIC_")}
    done = subprocess.run(
        [sys.executable, "-m", "tfic_cli", *argv], env={**clean, **env}, capture_output=True, text=True, timeout=120,
        check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_fields_that_are_not_settings_are_left_to_the_dataclass() -> None:
    names = {d.path[0] for d in declarations(Example)}
    assert {f.name for f in fields(Example)} - names == {"computed"}
