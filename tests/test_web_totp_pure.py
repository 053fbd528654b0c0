"""The pure parts of the second factor and API tokens: codes, replay, recovery codes, QR, token parsers."""

from __future__ import annotations

import re

import pyotp
from hypothesis import given
from hypothesis import strategies as st

from web import api_tokens, code_wait, totp

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_800_000_000.0


def test_codes_are_rfc_6238_codes_of_the_time_step() -> None:
    """code_at agrees with pyotp's TOTP for the same moment (6 digits, 30 s steps, SHA-1)."""
    assert totp.code_at(SECRET, totp.step_of(NOW)) == pyotp.TOTP(SECRET).at(NOW)
    assert totp.step_of(NOW) == 60_000_000


def test_a_code_is_accepted_for_its_step_and_one_either_side_only() -> None:
    """Drift of one step is accepted; two steps away, or a replayed (not later) step, is not."""
    step = totp.step_of(NOW)
    for drift in (-1, 0, 1):
        assert totp.accepted_step(SECRET, totp.code_at(SECRET, step + drift), NOW, None) == step + drift
    assert totp.accepted_step(SECRET, totp.code_at(SECRET, step - 2), NOW, None) is None
    assert totp.accepted_step(SECRET, totp.code_at(SECRET, step + 2), NOW, None) is None
    now_code = totp.code_at(SECRET, step)
    assert totp.accepted_step(SECRET, now_code, NOW, step) is None  # used once
    assert totp.accepted_step(SECRET, totp.code_at(SECRET, step - 1), NOW, step) is None  # older
    assert totp.accepted_step(SECRET, now_code, NOW, step - 1) == step


def test_typed_codes_may_have_spaces_or_a_hyphen() -> None:
    """'123 456', '123-456' and ' 123456 ' are the code 123456; letters, 5 or 7 digits are not codes."""
    assert [totp.parse_code(t) for t in ("123 456", "123-456", " 123456 ")] == ["123456"] * 3
    assert [
        totp.parse_code(t) for t in ("12345", "1234567", "12a456", "", "\uff11\uff12\uff13\uff14\uff15\uff16")
    ] == [None] * 5


@given(st.text(max_size=80))
def test_parse_code_gives_six_ascii_digits_or_none(text: str) -> None:
    """Any text: None, or exactly six ASCII digits that appear in order in the text."""
    parsed = totp.parse_code(text)
    assert parsed is None or re.fullmatch(r"[0-9]{6}", parsed)
    if parsed is not None:
        assert re.sub(r"[ \-]", "", text.strip()) == parsed


@given(st.text(max_size=80), st.integers(min_value=0, max_value=2**40))
def test_accepted_step_never_raises_and_needs_a_code(text: str, last: int) -> None:
    """Any text and any last step: None or a step later than the last one, never an exception."""
    step = totp.accepted_step(SECRET, text, NOW, last)
    assert step is None or (step > last and totp.parse_code(text) is not None)


def test_recovery_codes_are_fresh_and_parse_back_to_their_hash() -> None:
    """Ten distinct codes of four groups; lower case and no hyphens give the same hash."""
    codes = totp.new_recovery_codes()
    assert len(set(codes)) == 10
    assert all(re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", c) for c in codes)
    first = codes[0]
    assert totp.recovery_hash(first.lower().replace("-", "")) == totp.recovery_hash(first)
    assert totp.recovery_hash(first) is not None and len(totp.recovery_hash(first) or "") == 64
    assert totp.recovery_hash("ABCD-EFGH-IJKL-MNO1") is None  # 1 is not base32


@given(st.text(max_size=80))
def test_parse_recovery_code_gives_sixteen_base32_characters_or_none(text: str) -> None:
    """Any text: None, or 16 upper-case base32 characters."""
    parsed = totp.parse_recovery_code(text)
    assert parsed is None or re.fullmatch(r"[A-Z2-7]{16}", parsed)


def test_the_otpauth_uri_and_qr_code_carry_nothing_external() -> None:
    """The URI names issuer, tenant and login; the SVG has no script, style, link or image."""
    uri = totp.otpauth_uri(SECRET, "acme", "mika")
    assert (
        uri == f"otpauth://totp/Telework%20Supporter:acme%3Amika?secret={SECRET}&issuer=Telework%20Supporter"
    )
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert not re.search(r"<script|style=|<style|href|<image|url\(", svg)


def test_new_secrets_are_160_bit_base32() -> None:
    """32 base32 characters, different each time."""
    a, b = totp.new_secret(), totp.new_secret()
    assert a != b and re.fullmatch(r"[A-Z2-7]{32}", a)


def test_tokens_have_the_prefix_and_parse_from_a_bearer_header() -> None:
    """tws_ + 43 characters; 'Bearer' in any case; another scheme, prefix or length is refused."""
    token = api_tokens.new_token()
    assert re.fullmatch(r"tws_[A-Za-z0-9_-]{43}", token)
    assert api_tokens.parse_bearer(f"Bearer {token}") == token
    assert api_tokens.parse_bearer(f"bearer  {token}") == token
    for bad in (f"Basic {token}", token, f"Bearer {token}x", f"Bearer twa_{token[4:]}", "Bearer", ""):
        assert api_tokens.parse_bearer(bad) is None


@given(st.text(max_size=300))
def test_parse_bearer_gives_a_well_formed_token_or_none(header: str) -> None:
    """Any header value: None or a token of the exact shape, found in the header."""
    token = api_tokens.parse_bearer(header)
    assert token is None or (api_tokens.parse_token(token) == token and token in header)


@given(st.text(max_size=200))
def test_name_problem_names_a_message_or_accepts(name: str) -> None:
    """A token name is accepted exactly when 1-100 printable characters remain after stripping."""
    problem = api_tokens.name_problem(name)
    stripped = name.strip()
    ok = 0 < len(stripped) <= 100 and stripped.isprintable()
    assert (problem is None) == ok
    assert problem in (None, "api_token_name_length", "api_token_name_character")


@given(st.dictionaries(st.sampled_from(["user_id", "tenant", "login", "version", "misses", "x"]), st.text()))
def test_a_waiting_sign_in_parses_from_its_fields_or_not_at_all(fields: dict[str, str]) -> None:
    """Any Redis hash: a record whose fields give the same record back, or None."""
    record = code_wait.Waiting.parse(fields)
    assert record is None or code_wait.Waiting.parse(record.fields()) == record
