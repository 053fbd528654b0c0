"""The access matrix of the dashboards (see ``tests/access_matrix.py``): everything under
``/dashboards`` is one mount, asked here for the live board.

Every signed-in caller gets their own board (200): of their own tenant only, which the page's title
names (a beta caller's title naming acme would be a leak); anonymous is sent to the sign-in (303).
What each board shows of the tenant is tested in ``tests/test_dashboard_web.py``.
"""

from __future__ import annotations

import re

import httpx

from tests.access_matrix import Call, Case, everyone
from tests.web_world import World

TITLE = re.compile(r"<title>([^<]*)</title>")


async def live_board(world: World) -> Call:
    return Call(path={"path": "live"})


def names_acme(call: Call, answer: httpx.Response) -> bool:
    """The board's title names tenant acme."""
    found = TITLE.search(answer.text)
    return found is None or "· acme " in found.group(1)


CASES = [
    Case("GET", "/dashboards/{path}", everyone(200, anon=303), live_board, leaks=names_acme),
]
