"""The one base of errors an operator can act on.

Every ``telework`` command turns an :class:`OperatorError` into one line on stderr and
exit code :data:`USAGE_ERROR`; anything else is a defect and keeps its traceback.
"""

from __future__ import annotations

USAGE_ERROR = 2  # exit code of a command stopped by a usage or operator error


class OperatorError(Exception):
    """Something the person running the program can fix: the message says what and how."""
