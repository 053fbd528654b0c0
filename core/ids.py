"""Identifiers shared by every layer: tenant, agent and user ids are slugs."""

from __future__ import annotations

import re

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # lowercase letters, digits, - and _; 1 to 63 long
