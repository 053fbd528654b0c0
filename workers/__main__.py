"""``python -m workers``: one persistence worker configured from ``TELEWORK_*``."""

from __future__ import annotations

import sys

from core.config import ConfigError
from core.logs import setup_logging
from core.settings import load_server_settings
from storage.db import SchemaError
from workers.run import run_worker


def main() -> int:
    try:
        settings = load_server_settings()
        setup_logging(settings.log_level)
        run_worker(settings)
    except (ConfigError, SchemaError) as exc:
        sys.stderr.write(f"telework worker: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
