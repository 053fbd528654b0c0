"""``python -m workers``: one persistence worker configured from ``TELEWORK_*``."""

from __future__ import annotations

import logging
import sys

from storage.db import SchemaError
from telework.config import ConfigError
from telework.settings import load_server_settings
from workers.run import run_worker

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class ExtraFormatter(logging.Formatter):
    """The usual line plus the record's structured ``extra`` fields as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        return line + "".join(f" {k}={v}" for k, v in extra.items())


def main() -> int:
    try:
        settings = load_server_settings()
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ExtraFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.basicConfig(level=settings.log_level, handlers=[handler])
        run_worker(settings)
    except (ConfigError, SchemaError) as exc:
        sys.stderr.write(f"telework worker: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
