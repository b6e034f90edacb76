"""What every command shares: the consoles, error reporting, common options and progress."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape

from ..errors import OutOfMemory
from ..files.safe_paths import UnsafeOutput, check_output
from ..text import listed, printable

console = Console()
err_console = Console(stderr=True)

BAD_INPUT = 2  # exit code for bad input data, as click uses for bad usage
SEED = click.IntRange(min=0)  # the configs refuse seeds past their MAX_SEED


def say(text: str, err: bool = False) -> None:
    """Print a message (no highlighting, no wrapping inside paths or ids; control characters
    written out, as a quoted file name may hold them)."""
    (err_console if err else console).print(printable(text), highlight=False, soft_wrap=True)


def warn(text: str) -> None:
    say(f"[yellow]warning:[/] {text}", err=True)


def escaped_list(ids: list[str], most: int = 10) -> str:
    """The first `most` ids, escaped for rich markup (an id may read like a tag)."""
    return escape(listed(ids, most))


def interrupted_exit(signum: int = signal.SIGINT) -> NoReturn:
    """Exit as the shell reports a job ended by a signal: 130 for Ctrl-C, 143 for SIGTERM."""
    sys.exit(128 + signum)


class Terminated(KeyboardInterrupt):
    """A signal other than Ctrl-C's, interrupting as Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def interrupt(signum, frame):
    """A signal handler that interrupts as Ctrl-C does, remembering the signal."""
    raise Terminated(signum)


class SaidWarnings(logging.Handler):
    """The library's logged warnings, printed as the CLI's own (to the current stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(escape(record.getMessage()))


def safe_output(out: str, option: str, **paths: object) -> None:
    """Refuse `out` as `option` where `check_output` does, as a usage error naming the option."""
    try:
        check_output(out, **paths)
    except UnsafeOutput as e:  # click prints it: control characters written out
        raise click.BadParameter(printable(str(e)), param_hint=option) from None


def reports_bad_input(command):
    """Turn a ValueError raised on user data (DatasetError, CheckpointError, a bad config value)
    or an OSError (an unwritable path) into a message and exit 2; running out of memory into
    what to lower and exit 1; an interrupt no command handled itself exits as the shell reports
    one (130, 143)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except OutOfMemory as e:
            say(f"[bold red]error:[/] {escape(str(e))}: {escape(e.advice)}", err=True)
            sys.exit(1)
        except ValueError as e:  # DatasetError, CheckpointError, bad config values
            # escape: user data quoted in a message (e.g. "[/x]") must not be read as markup
            message = escape(str(e))
        except OSError as e:  # an output path that cannot be written, a full disk
            message = escape(f"{e.filename or ''}: {e.strerror or e}")
        except KeyboardInterrupt as stop:  # one no command handles: the shell's status, not
            say("interrupted", err=True)  # click's "Aborted!" and 1
            interrupted_exit(getattr(stop, "signum", signal.SIGINT))
        say(f"[bold red]error:[/] {message}", err=True)
        sys.exit(BAD_INPUT)

    return wrapper


dataset_option = click.option(
    "--dataset",
    "-d",
    "dataset",
    required=True,
    metavar="SPEC",
    help="Bundled set (e.g. arc-agi-1/evaluation), a directory or file of ARC task JSON, "
    "or a Kaggle *_challenges.json.",
)
solutions_option = click.option(
    "--solutions",
    type=click.Path(dir_okay=False),
    default=None,
    help="Kaggle *_solutions.json, when it does not sit beside the challenges file.",
)


def out_folder_option(dest: str, help: str):
    """`--out`/`-o`, the folder a command writes, required."""
    return click.option(
        "--out", "-o", dest, required=True, type=click.Path(file_okay=False), help=help
    )


device_option = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
)


@dataclass(frozen=True)
class ConfigFlag:
    """An option declared once against the config field `key` ("train.lr") it sets."""

    decls: tuple[str, ...]
    key: str
    help: str
    kwargs: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.decls[0].partition("/")[0].lstrip("-").replace("-", "_")


class DeferredHelp(click.Option):
    """An option whose help is written when it is shown: the defaults it quotes live in the
    configs, and reading them at import would load torch for every command line."""

    def __init__(self, *args, help_text: Callable[[], str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.help_text = help_text

    def get_help_record(self, ctx: click.Context):
        self.help = self.help_text()
        return super().get_help_record(ctx)


def config_flags(flags: Sequence[ConfigFlag], default: Callable[[str], str]):
    """Add `flags` to a command, each None unless given, its help ending with the default
    `default(key)` describes."""

    def decorate(command):
        for flag in reversed(flags):
            help_text = lambda flag=flag: f"{flag.help} [default: {default(flag.key)}]"  # noqa: E731
            option = click.option(*flag.decls, flag.name, default=None, cls=DeferredHelp,
                                  help_text=help_text, **flag.kwargs)  # fmt: skip
            command = option(command)
        return command

    return decorate


def flag_values(flags: Sequence[ConfigFlag], options: dict) -> dict[str, object]:
    """The config fields set by the `flags` given among `options`: {"train.lr": 3e-4}."""
    given = {f.key: options.get(f.name) for f in flags}
    flags_off = {f.key for f in flags if f.kwargs.get("is_flag")}
    return {k: v for k, v in given.items() if v is not None and not (k in flags_off and v is False)}


class Duration(click.ParamType):
    """'90s', '15m', '11h', '1h30m' or plain seconds -> positive seconds."""

    name = "duration"
    _NUMBER = r"(\d+(?:\.\d+)?)"
    # Hours, minutes, seconds, each at most once and in that order; or a bare number of seconds.
    _FORM = re.compile(rf"(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s)?|{_NUMBER}")

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        match = self._FORM.fullmatch(text)
        if not text or match is None:
            self.fail(f"{value!r} is not a duration like 90s, 15m, 1h30m or 11h", param, ctx)
        h, m, s, bare = (float(g) if g else 0.0 for g in match.groups())
        seconds = h * 3600 + m * 60 + s + bare
        if seconds <= 0:
            self.fail(f"{value!r} is no time at all", param, ctx)
        return seconds


@contextlib.contextmanager
def shown(progress, on: bool = True) -> Iterator[None]:
    """Draw the rich `progress` while the block runs (only where `on`: the main rank). A block
    that stops before the bar moved takes it away, so a refusal is not printed under an empty
    bar."""
    if not on:
        yield
        return
    with progress:
        try:
            yield
        except BaseException:
            if not any(task.completed for task in progress.tasks):
                for task in progress.tasks:
                    progress.update(task.id, visible=False)
            raise


def plain_lines(every_s: float):
    """Where no live bar can be drawn (output to a file or a pipe, as in a scheduler's log),
    a function that prints a progress line, at most one every `every_s` seconds unless `last`;
    on a terminal it prints nothing (the bar shows it)."""
    printed = -math.inf

    def line(text: str, last: bool = False) -> None:
        nonlocal printed
        if console.is_terminal or not (last or time.monotonic() - printed >= every_s):
            return
        printed = time.monotonic()
        say(text)

    return line


def in_demo() -> bool:
    """Whether the command runs as part of `hrm-arc demo`."""
    return click.get_current_context().find_root().invoked_subcommand == "demo"
