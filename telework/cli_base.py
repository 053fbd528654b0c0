"""What every ``telework`` subcommand module shares: the parser class, log set-up, argument types."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import NoReturn

from core.config import ConfigError
from core.errors import USAGE_ERROR


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
