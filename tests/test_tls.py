"""TLS without a network: pins, loopback rules, the agent's and the servers' TLS settings, dev-cert files."""

from __future__ import annotations

import base64
import ssl
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from agent.config import load_agent_config
from agent.run import options_of
from agent.tls import agent_tls, insecure_refusal, pin_refusal, tls_of
from core.config import ConfigError
from core.devcert import RENEW_BEFORE, ensure, parse_name, renewal_reason, wanted_names
from core.settings import load_server_settings
from core.tls import (
    PinError,
    check_pair,
    format_pin,
    is_loopback,
    parse_pin,
    parse_pins,
    pin_of_pem,
    server_context,
    spki_digest,
)
from telework.cli import main
from telework.up import Resolved, plan_children
from telework.up_tls import dev_ca_beside, readiness_context

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NAMES = ("localhost", "127.0.0.1", "::1", "pc1")


# ------------------------------------------------------------------------- pins


@given(st.binary(min_size=32, max_size=32))
def test_a_formatted_pin_parses_back_to_its_digest_in_every_form(digest: bytes) -> None:
    """sha256/<b64>, sha256//<b64>, hex and colon-hex of one digest all parse to that digest."""
    b64 = base64.b64encode(digest).decode()
    hexed = digest.hex()
    forms = [format_pin(digest), f"sha256//{b64}", f" SHA256/{b64} ", hexed, hexed.upper(), ":".join(
        hexed[i : i + 2] for i in range(0, 64, 2)
    )]  # fmt: skip
    assert [parse_pin(form) for form in forms] == [digest] * len(forms)


@given(st.text(max_size=120))
def test_any_text_is_a_32_byte_digest_or_a_pin_error(text: str) -> None:
    """The pin parser never fails otherwise: a 32-byte digest, or PinError naming what is expected."""
    try:
        digest = parse_pin(text)
    except PinError as exc:
        assert "expected sha256/<base64 of 32 bytes> or 64 hex digits" in str(exc)
    else:
        assert len(digest) == 32


@pytest.mark.parametrize(
    "text",
    ["", "sha256/", "sha256/AAAA", "sha1/" + "A" * 28, "ab" * 31, "zz" * 32, "sha256/" + "é" * 44],
)
def test_malformed_pins_are_refused(text: str) -> None:
    """Empty, short, another hash, non-hex and non-ASCII pins raise PinError."""
    with pytest.raises(PinError):
        parse_pin(text)


def test_a_pin_list_is_comma_separated_and_bounded() -> None:
    """ "" is no pin, blanks are skipped, two pins give two digests, 17 pins are too many."""
    one, two = format_pin(b"\x01" * 32), format_pin(b"\x02" * 32)
    assert parse_pins("") == ()
    assert parse_pins(f" {one} , ,{two}") == (b"\x01" * 32, b"\x02" * 32)
    with pytest.raises(PinError, match="at most 16 pins, got 17"):
        parse_pins(",".join([one] * 17))


def test_a_certificate_key_passes_only_its_own_pin(tmp_path: Path) -> None:
    """pin_refusal: no pins pass; the key's own pin passes; another pin is refused naming both."""
    made = ensure(tmp_path / "tls", NAMES, "pc1", NOW)
    der = x509.load_pem_x509_certificate(made.server_cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    assert format_pin(spki_digest(der)) == made.pin == pin_of_pem(made.server_cert.read_bytes())
    assert pin_refusal(der, ()) is None
    assert pin_refusal(der, (b"\x00" * 32, parse_pin(made.pin))) is None
    assert pin_refusal(der, (b"\x00" * 32,)) == (
        f"the gateway's certificate key is {made.pin}, which is not a pin of TELEWORK_AGENT_TLS_PIN"
    )
    assert (
        pin_refusal(None, (b"\x00" * 32,))
        == "the gateway sent no certificate to check against TELEWORK_AGENT_TLS_PIN"
    )


# --------------------------------------------------------------- loopback rules


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True), ("LOCALHOST.", True), ("a.localhost", False), ("127.0.0.1", True),
        ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("10.0.0.5", False), ("192.0.2.1", False),
        ("::ffff:10.0.0.1", False), ("gateway.example.com", False), ("localhost.example.com", False),
        ("", False),
    ],
)  # fmt: skip
def test_loopback_is_localhost_127_slash_8_and_ipv6_one(host: str, loopback: bool) -> None:
    """is_loopback: exactly localhost (not *.localhost), 127.0.0.0/8 and ::1."""
    assert is_loopback(host) is loopback


def test_plain_ws_is_refused_off_this_machine_unless_allowed() -> None:
    """ws:// to 10.0.0.5 is refused with the flag named; loopback, wss:// and the flag pass."""
    assert insecure_refusal("ws://10.0.0.5:8700/v1/agent", False) == (
        "refusing unencrypted ws:// to '10.0.0.5' (not this machine): use wss:// "
        "(or TELEWORK_AGENT_ALLOW_INSECURE=1 for development only)"
    )
    assert insecure_refusal("ws://127.0.0.1:8700/v1/agent", False) is None
    assert insecure_refusal("ws://[::1]:8700/v1/agent", False) is None
    assert insecure_refusal("wss://10.0.0.5:8700/v1/agent", False) is None
    assert insecure_refusal("ws://10.0.0.5:8700/v1/agent", True) is None


def test_the_agent_settings_name_the_key_that_cannot_be_used(tmp_path: Path) -> None:
    """agent_tls: ws:// off loopback -> GATEWAY_URL; a bad pin -> _TLS_PIN; pins over ws:// -> _TLS_PIN;
    an unreadable CA file -> _TLS_CA_FILE."""
    cases = [
        (("ws://10.0.0.5:8700/v1/agent", False, None, ""), "TELEWORK_GATEWAY_URL"),
        (("wss://gw.example.com/v1/agent", False, None, "sha256/AAAA"), "TELEWORK_AGENT_TLS_PIN"),
        (("ws://127.0.0.1:8700/v1/agent", False, None, format_pin(b"\x00" * 32)), "TELEWORK_AGENT_TLS_PIN"),
        (("wss://gw.example.com/v1/agent", False, tmp_path / "none.crt", ""), "TELEWORK_AGENT_TLS_CA_FILE"),
    ]
    for args, key in cases:
        with pytest.raises(ConfigError) as refused:
            agent_tls(*args)
        assert refused.value.key == key, args


def test_the_agent_options_carry_its_tls_settings(tmp_path: Path) -> None:
    """TELEWORK_AGENT_* settings become the session's TLS rules; ws:// off loopback needs the flag."""
    made = ensure(tmp_path / "tls", NAMES, "pc1", NOW)
    env = {
        "TELEWORK_GATEWAY_URL": "wss://pc1:8700/v1/agent",
        "TELEWORK_AGENT_TLS_CA_FILE": str(made.ca_cert),
        "TELEWORK_AGENT_TLS_PIN": made.pin,
    }
    tls = options_of(load_agent_config(env)).tls
    assert (tls.ca_file, tls.pins, tls.allow_insecure) == (made.ca_cert, (parse_pin(made.pin),), False)
    assert tls.ssl_for("wss://pc1:8700/v1/agent") is tls.context and tls.ssl_for("ws://127.0.0.1/") is None
    plain = {"TELEWORK_GATEWAY_URL": "ws://10.0.0.5:8700/v1/agent"}
    with pytest.raises(
        ConfigError, match=r"^TELEWORK_GATEWAY_URL: refusing unencrypted ws:// to '10\.0\.0\.5'"
    ):
        options_of(load_agent_config(plain))
    allowed = tls_of(load_agent_config({**plain, "TELEWORK_AGENT_ALLOW_INSECURE": "1"}))
    assert (allowed.allow_insecure, allowed.context) == (True, None)


# ------------------------------------------------------------- server settings


def test_the_servers_tls_settings_come_in_pairs_and_make_the_cookie_secure(tmp_path: Path) -> None:
    """Cert without key and key without cert are refused naming TELEWORK_TLS_KEY; with both the
    console's cookie is Secure and its base URL https:// unless given."""
    with pytest.raises(ConfigError, match=r"^TELEWORK_TLS_KEY: .*required with TELEWORK_TLS_CERT"):
        load_server_settings(tls_cert=tmp_path / "c.pem")
    with pytest.raises(ConfigError, match=r"^TELEWORK_TLS_KEY: .*set TELEWORK_TLS_CERT too"):
        load_server_settings(tls_key=tmp_path / "k.pem")
    both = load_server_settings(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")
    assert (both.tls, both.web_secure_cookie, both.web_base_url) == (True, True, "https://127.0.0.1:8702")
    given_url = load_server_settings(
        tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem", web_base_url="https://tw.example.com"
    )
    assert given_url.web_base_url == "https://tw.example.com"
    plain = load_server_settings()
    assert (plain.tls, plain.web_secure_cookie) == (False, False)


def test_a_bad_certificate_or_key_is_one_error_naming_the_setting(tmp_path: Path) -> None:
    """Missing files, non-PEM content, an encrypted key and another certificate's key each name
    TELEWORK_TLS_CERT or TELEWORK_TLS_KEY; the right pair gives a TLS 1.2+ server context."""
    one = ensure(tmp_path / "one", NAMES, "pc1", NOW)
    two = ensure(tmp_path / "two", NAMES, "pc1", NOW)
    junk = tmp_path / "junk.pem"
    junk.write_text("not pem\n")
    encrypted = tmp_path / "encrypted.pem"
    key = serialization.load_pem_private_key(one.server_key.read_bytes(), None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cases = [
        (tmp_path / "none.crt", one.server_key, "TELEWORK_TLS_CERT: cannot read the certificate"),
        (one.server_cert, tmp_path / "none.key", "TELEWORK_TLS_KEY: cannot read the private key"),
        (junk, one.server_key, "TELEWORK_TLS_CERT: .* holds no PEM certificate"),
        (one.server_cert, junk, "TELEWORK_TLS_KEY: .* holds no usable PEM private key"),
        (one.server_cert, encrypted, "TELEWORK_TLS_KEY: .* is encrypted"),
        (one.server_cert, two.server_key, "TELEWORK_TLS_KEY: .* is not the key of the certificate"),
    ]
    for cert, key_path, message in cases:
        with pytest.raises(ConfigError, match=f"^{message}"):
            server_context(cert, key_path)
    assert check_pair(one.server_cert, one.server_key, NOW) == one.pin
    assert server_context(one.server_cert, one.server_key).minimum_version.name == "TLSv1_2"


# --------------------------------------------------------------------- dev-cert


@given(st.text(max_size=80))
def test_a_certificate_name_parses_to_a_stable_form_or_a_clear_error(text: str) -> None:
    """parse_name: a normalised name that parses to itself, or ValueError naming what is expected."""
    try:
        name = parse_name(text)
    except ValueError as exc:
        assert str(exc).startswith("expected a host name")
    else:
        assert parse_name(name) == name and name == name.strip().lower()


def test_wanted_names_are_loopback_the_host_and_the_extra_names_once() -> None:
    """Loopback first, the host name when valid, then --name values normalised and without repeats."""
    assert wanted_names("PC1.", ["GW.example.com", "10.0.0.5", "[::1]", "pc1"]) == (
        "localhost", "127.0.0.1", "::1", "pc1", "gw.example.com", "10.0.0.5",
    )  # fmt: skip
    assert wanted_names("bad_host", []) == ("localhost", "127.0.0.1", "::1")
    with pytest.raises(ValueError, match="expected a host name"):
        wanted_names("pc1", ["-bad-"])


def test_the_renewal_reason_is_absence_another_ca_other_names_or_near_expiry() -> None:
    """renewal_reason names why a certificate is reissued, and None for one still good."""
    names = frozenset(NAMES)
    later = NOW + timedelta(days=300)
    assert renewal_reason(None, names, None, False, NOW) == "there was none"
    assert renewal_reason(names, names, later, False, NOW) == "it was not signed by this CA"
    assert renewal_reason(names - {"pc1"}, names, later, True, NOW) == "its names changed"
    soon = NOW + RENEW_BEFORE
    assert renewal_reason(names, names, soon, True, NOW) == f"it expires on {soon.date().isoformat()}"
    assert renewal_reason(names, names, later, True, NOW) is None


def test_dev_cert_keeps_what_is_good_and_renews_what_is_not(tmp_path: Path) -> None:
    """A second run keeps every file; new names or a near expiry reissue the certificate with the
    same key (same pin) and the same CA; the folder is 0700 and every file 0600."""
    folder = tmp_path / "tls"
    first = ensure(folder, NAMES, "pc1", NOW)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert sorted(files) == ["ca.crt", "ca.key", "server.crt", "server.key"]
    assert (first.ca_created, first.issued) == (True, "there was none")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE((folder / n).stat().st_mode) for n in files} == {0o600}
    again = ensure(folder, NAMES, "pc1", NOW + timedelta(days=1))
    assert (again.ca_created, again.issued) == (False, None)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    more = ensure(folder, (*NAMES, "gw.example.com"), "pc1", NOW + timedelta(days=2))
    assert (more.ca_created, more.issued, more.pin) == (False, "its names changed", first.pin)
    cert = x509.load_pem_x509_certificate(more.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "pc1", "gw.example.com"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    ca = x509.load_pem_x509_certificate(more.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    near = ensure(folder, (*NAMES, "gw.example.com"), "pc1", more.not_after - timedelta(days=10))
    assert near.issued == f"it expires on {more.not_after.date().isoformat()}" and near.pin == first.pin
    assert near.not_after > more.not_after and (folder / "ca.crt").read_bytes() == files["ca.crt"]


def test_dev_cert_command_prints_the_files_and_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`telework dev-cert --name`: exit 0; the files, the names and the server and agent settings."""
    assert main(["dev-cert", "--data-dir", str(tmp_path), "--name", "gw.example.com"]) == 0
    out = capsys.readouterr().out.splitlines()
    folder = tmp_path / "tls"
    pin = pin_of_pem((folder / "server.crt").read_bytes())
    assert (
        out[0] == f"CA certificate: {folder / 'ca.crt'}  (created; its key ca.key stays in this folder, 0600)"
    )
    assert out[4] == f"key pin:        {pin}"
    assert f"  TELEWORK_TLS_CERT={folder / 'server.crt'}" in out
    assert f"  TELEWORK_TLS_KEY={folder / 'server.key'}" in out
    assert f"  TELEWORK_AGENT_TLS_CA_FILE={folder / 'ca.crt'}" in out
    assert out[3].endswith(", gw.example.com")
    assert main(["dev-cert", "--data-dir", str(tmp_path), "--name", "bad_name"]) == 2
    assert "--name: expected a host name" in capsys.readouterr().err


# ------------------------------------------------------------------ telework up


def test_up_under_tls_hands_on_https_wss_and_the_dev_ca(tmp_path: Path) -> None:
    """With a dev-cert pair `up` prints and passes https/wss URLs, its agents trust the CA beside the
    certificate, and its readiness probe speaks TLS; without one nothing changes."""
    made = ensure(tmp_path / "tls", NAMES, "pc1", NOW)
    assert dev_ca_beside(made.server_cert) == made.ca_cert
    assert dev_ca_beside(tmp_path / "elsewhere" / "server.crt") is None and dev_ca_beside(None) is None
    secure = Resolved("redis://r", "sqlite://", tmp_path, "0.0.0.0", 8700, "127.0.0.1", 8701, "demo",
                      "127.0.0.1", 8702, True, made.ca_cert)  # fmt: skip
    assert (secure.gateway_ws_url, secure.gateway_http_url, secure.web_url) == (
        "wss://127.0.0.1:8700/v1/agent", "https://127.0.0.1:8700", "https://127.0.0.1:8702",
    )  # fmt: skip
    specs = {s.name: s.env for s in plan_children("py", secure, 1, "h", tmp_path / "t.json", 1.0, "tok")}
    assert specs["web"]["TELEWORK_WEB_BASE_URL"] == "https://127.0.0.1:8702"
    for agent in ("agents", "camera-agent"):
        assert specs[agent]["TELEWORK_GATEWAY_URL"] == "wss://127.0.0.1:8700/v1/agent"
        assert specs[agent]["TELEWORK_AGENT_TLS_CA_FILE"] == str(made.ca_cert)
    plain = replace(secure, tls=False, agent_ca_file=None)
    assert plain.gateway_ws_url == "ws://127.0.0.1:8700/v1/agent" and plain.web_url == "http://127.0.0.1:8702"
    plain_specs = {s.name: s.env for s in plan_children("py", plain, 1, "h", tmp_path / "t.json", 1.0, "tok")}
    assert "TELEWORK_AGENT_TLS_CA_FILE" not in plain_specs["agents"]
    assert readiness_context(False) is None
    probe = readiness_context(True)
    assert probe is not None and (probe.check_hostname, probe.verify_mode) == (False, ssl.CERT_NONE)
