"""``python -m workers``: one persistence worker configured from ``TELEWORK_*``."""

from __future__ import annotations

import sys

from core.logs import setup_logging
from core.process import run_command
from core.settings import load_server_settings
from workers.run import run_worker


def _worker() -> None:
    settings = load_server_settings()
    setup_logging(settings.log_level)
    run_worker(settings)


def main() -> int:
    """Run the worker; a bad setting or an unmigrated database is one line on stderr and exit 2."""
    return run_command("telework worker", _worker)


if __name__ == "__main__":
    sys.exit(main())
