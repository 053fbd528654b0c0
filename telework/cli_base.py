"""What every ``telework`` subcommand module shares: the parser class, log set-up, argument types,
the admin commands' database, and plain aligned tables."""

from __future__ import annotations

import argparse
import os
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from core.config import ConfigError
from core.errors import USAGE_ERROR
from core.logs import printable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from core.settings import ServerSettings


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def log_level(args: argparse.Namespace, default: str = "INFO") -> str:
    level = args.log_level or os.environ.get("TELEWORK_LOG_LEVEL", "").strip() or default
    if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("TELEWORK_LOG_LEVEL", f"expected DEBUG, INFO, WARNING or ERROR (got {level!r})")
    return level.upper()


def setup(args: argparse.Namespace, level: str | None = None) -> None:
    from core.logs import setup_logging

    setup_logging(args.log_level or level or log_level(args))


def positive_int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def data_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, help="data folder (env TELEWORK_DATA_DIR; default: user data dir)"
    )


def open_admin(args: argparse.Namespace) -> tuple[ServerSettings, Engine]:
    """The server settings and the migrated database of an admin command (logs: warnings and up);
    its audit entries are authenticated and witnessed (the master key is read at the first)."""
    from core.logs import setup_logging
    from core.settings import load_server_settings
    from storage.audit_witness import protect_with_settings
    from storage.db import open_database

    settings = load_server_settings(data_dir=getattr(args, "data_dir", None))
    setup_logging(getattr(args, "log_level", None) or "WARNING")
    engine = open_database(settings)
    protect_with_settings(engine, settings)
    return settings, engine


def width(text: str) -> int:
    """Pure: the columns ``text`` takes on a terminal (East Asian wide characters two, combining none)."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        for ch in text
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Pure: the lines of a plain table, columns left-aligned two spaces apart, no trailing spaces."""
    cells = [
        [printable(c, spaces=True) for c in header],
        *([printable(c, spaces=True) for c in row] for row in rows),
    ]
    widths = [max(width(r[i]) for r in cells) for i in range(len(header))]
    return [
        "  ".join(c + " " * (w - width(c)) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    ]
