"""The console's pure rules, without I/O: passwords, session expiry and records, texts, search patterns."""

from __future__ import annotations

import string
import time
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from web.console import cookie_name
from web.i18n import LANGUAGES, MESSAGES, from_accept_language, language_for, text
from web.passwords import Argon2Params, check, make_hasher, password_problem, spend
from web.ratelimit import account_key
from web.scope import like_pattern
from web.sessions import SessionRecord, csrf_matches, expiry, plausible_token

RECORD = SessionRecord(7, "acme", 2, "tok", created=1000.0, seen=1500.0, address="192.0.2.1")


def test_password_rules_name_each_problem() -> None:
    """Too short, too long, control character, the login itself (any case), or fine."""
    assert [
        password_problem("short"),
        password_problem("x" * 257),
        password_problem("ten chars\x00!"),
        password_problem("Long.Login.Name", "long.login.name"),
        password_problem("パスワードは十文字以上です"),
        password_problem("x" * 256),
    ] == ["too_short", "too_long", "control_character", "same_as_login", None, None]


def test_check_says_match_and_rehash() -> None:
    """The right password matches (rehash when parameters differ); a wrong one or a broken hash does not."""
    old = make_hasher(Argon2Params(1, 8192, 1))
    new = make_hasher(Argon2Params(2, 8192, 1))
    stored = old.hash("a long password")
    assert check(old, stored, "a long password") == (True, False)
    assert check(new, stored, "a long password") == (True, True)
    assert check(old, stored, "another password") == (False, False)
    assert check(old, "not a hash", "a long password") == (False, False)
    assert check(old, stored, "a" * 10_000) == (False, False)


def test_expiry_idle_absolute_and_absolute_wins() -> None:
    """Live before both limits; idle after idle_s without a request; absolute after absolute_s, first."""
    assert expiry(RECORD, 1599.9, idle_s=100, absolute_s=1000) == "live"
    assert expiry(RECORD, 1600.0, idle_s=100, absolute_s=1000) == "idle"
    assert expiry(RECORD, 2000.0, idle_s=100, absolute_s=1000) == "absolute"
    assert expiry(RECORD, 1999.0, idle_s=10_000, absolute_s=1000) == "live"


def test_session_record_round_trips_and_refuses_broken_fields() -> None:
    """fields() -> parse() is the identity; a missing or non-numeric field gives None."""
    assert SessionRecord.parse(RECORD.fields()) == RECORD
    assert SessionRecord.parse({**RECORD.fields(), "version": "two"}) is None
    broken = RECORD.fields()
    del broken["csrf"]
    assert SessionRecord.parse(broken) is None


@given(st.dictionaries(st.sampled_from(sorted(RECORD.fields())), st.text(max_size=30)))
def test_session_record_parse_never_raises(fields: dict[str, str]) -> None:
    """Any Redis hash gives a record or None, never an exception."""
    parsed = SessionRecord.parse(fields)
    assert parsed is None or isinstance(parsed, SessionRecord)


@given(st.text(max_size=100))
def test_plausible_token_accepts_only_url_safe_base64_up_to_64(value: str) -> None:
    """A cookie value is looked up only when it is 1-64 URL-safe base64 characters."""
    allowed = set(string.ascii_letters + string.digits + "-_")
    assert plausible_token(value) == (0 < len(value) <= 64 and set(value) <= allowed)


def test_csrf_compares_exactly() -> None:
    """Only the session's token passes; None, a prefix, non-ASCII do not."""
    assert [csrf_matches(RECORD, v) for v in ("tok", None, "to", "tok ", "tök")] == [
        True,
        False,
        False,
        False,
        False,
    ]


def test_every_message_exists_in_both_languages_and_formats() -> None:
    """Each key has a non-empty ja and en text; placeholders are the same in both."""
    for key, texts in MESSAGES.items():
        assert set(texts) == set(LANGUAGES), key
        fields = [{n for _, n, _, _ in string.Formatter().parse(texts[lang]) if n} for lang in LANGUAGES]
        assert fields[0] == fields[1], key
    assert text("too_many", "en", seconds=30) == "Too many failed sign-ins. Try again in 30 seconds."
    assert (
        text("too_many", "ja", seconds=30) == "サインインの失敗が多すぎます。30秒後にもう一度お試しください。"
    )


def test_language_choice_user_then_query_then_browser_then_japanese() -> None:
    """The user's language wins; before sign-in ?lang=, then Accept-Language by weight, else ja."""
    assert language_for("en", "ja", "ja") == "en"
    assert language_for(None, "en-US", "ja") == "en"
    assert language_for(None, None, "fr-FR, en;q=0.8, ja;q=0.9") == "ja"
    assert language_for(None, None, "fr, en-GB;q=0.5") == "en"
    assert language_for(None, "xx", "de") == "ja"
    assert language_for(None, None, "en;q=0, ja;q=abc") == "ja"


@given(st.text(max_size=300))
def test_accept_language_parser_never_raises(header: str) -> None:
    """Any header gives ja, en or None."""
    assert from_accept_language(header) in (None, "ja", "en")


def test_like_pattern_takes_wildcards_literally() -> None:
    """%, _ and the escape character itself are escaped; the text lowercased."""
    assert like_pattern("A%b_c\\") == "%a\\%b\\_c\\\\%"


@given(st.text(max_size=2000), st.text(max_size=2000))
def test_account_key_is_a_short_digest_of_any_login(tenant: str, login: str) -> None:
    """Any tenant and login (control characters, surrogates, 2,000 characters) give 32 hex characters."""
    key = account_key(tenant, login)
    assert len(key) == 32 and set(key) <= set("0123456789abcdef")


def test_cookie_name_has_the_host_prefix_only_over_tls() -> None:
    """__Host- needs Secure, which browsers accept only over TLS."""
    assert (cookie_name("tw_session", True), cookie_name("tw_session", False)) == (
        "__Host-tw_session",
        "tw_session",
    )


def test_an_unknown_login_costs_a_password_verification_too() -> None:
    """spend() (no such account) takes about as long as checking a real hash: 0.5x to 2x, medians of 5."""
    params = Argon2Params(2, 32_768, 1)
    hasher = make_hasher(params)
    stored = hasher.hash("a long password")
    spend(hasher, params)  # the dummy hash is made once, outside the timing

    def median(call: Callable[[], object]) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return sorted(times)[2]

    ratio = median(lambda: spend(hasher, params)) / median(lambda: check(hasher, stored, "wrong password"))
    assert 0.5 <= ratio <= 2.0, ratio
