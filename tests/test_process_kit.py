"""The process kit in core/: one database URL, one Redis URL lookup, one stop-signal wiring,
operator errors as one line and exit 2 for every command."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from core.config import ConfigError
from core.errors import USAGE_ERROR, OperatorError
from core.process import async_stop_on_signals, redis_url, run_command, stop_on_signals
from core.settings import ServerSettings, load_server_settings, sqlite_url
from telework.cli import main
from tests.waiting import wait_until_sync


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TELEWORK_* settings from the outside; HOME is the test's folder."""
    for key in list(os.environ):
        if key.startswith("TELEWORK_") and not key.startswith("TELEWORK_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_tilde_data_dir_is_the_home_folder_for_every_program(tmp_path: Path) -> None:
    """TELEWORK_DATA_DIR='~/twx' gives every process the same database under $HOME, never ./~/twx."""
    settings = load_server_settings_from({"TELEWORK_DATA_DIR": "~/twx"})
    home = tmp_path / "home"
    assert settings.data_dir == home / "twx"
    assert settings.database() == f"sqlite:///{home / 'twx' / 'telework.db'}"
    assert settings.database() == sqlite_url(Path("~/twx"))


def load_server_settings_from(env: dict[str, str]) -> ServerSettings:
    from core.config import load

    return load(ServerSettings, env)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "TELEWORK_DATABASE_URL",
            "mysql://u@h/db",
            "TELEWORK_DATABASE_URL: Value error, expected an sqlite:/// or postgresql:// URL "
            "(e.g. postgresql://user@host:5432/db) (got 'mysql://u@h/db')",
        ),
        (
            "TELEWORK_REDIS_URL",
            "notaurl",
            "TELEWORK_REDIS_URL: Value error, expected a redis://, rediss:// or unix:// URL "
            "(e.g. redis://127.0.0.1:6379/0) (got 'notaurl')",
        ),
    ],
)
def test_a_url_of_the_wrong_kind_is_a_config_error_naming_the_key(
    key: str, value: str, expected: str
) -> None:
    """A database or Redis URL of an unsupported scheme stops start-up naming the variable."""
    with pytest.raises(ConfigError) as caught:
        load_server_settings_from({key: value})
    assert (caught.value.key, str(caught.value)) == (key, expected)


@pytest.mark.parametrize("command", [["db", "upgrade"], ["gateway"], ["worker"], ["admin", "task", "list"]])
def test_wrong_urls_are_one_line_and_exit_2_for_every_command(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """mysql:// and notaurl: exit 2 with one line naming the key, no traceback, whatever the command."""
    argv = [*command, "--tenant", "t"] if command[-1] == "list" else command
    monkeypatch.setenv("TELEWORK_DATABASE_URL", "mysql://u@h/db")
    code, out, err = cli(argv, capsys)
    assert (code, out, err.count("\n")) == (USAGE_ERROR, "", 1)
    assert "TELEWORK_DATABASE_URL: Value error, expected an sqlite:/// or postgresql:// URL" in err
    monkeypatch.delenv("TELEWORK_DATABASE_URL")
    monkeypatch.setenv("TELEWORK_REDIS_URL", "notaurl")
    code, out, err = cli(argv, capsys)
    assert (code, out, err.count("\n")) == (USAGE_ERROR, "", 1)
    assert "TELEWORK_REDIS_URL: Value error, expected a redis://" in err


def test_unreachable_postgresql_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PostgreSQL nobody listens on: `db upgrade` says it cannot be reached, exit 2, no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("TELEWORK_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{port}/none")
    code, out, err = cli(["db", "upgrade"], capsys)
    assert (code, out) == (USAGE_ERROR, "")
    assert err.startswith(
        f"telework db: error: database postgresql+psycopg://nobody@127.0.0.1:{port}/none cannot be reached: "
    )
    assert err.count("\n") == 1 and "Traceback" not in err


def test_db_upgrade_creates_a_missing_data_folder_privately(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`db upgrade` with a data folder that does not exist yet creates it (0700) and the schema."""
    folder = tmp_path / "not" / "yet"
    monkeypatch.setenv("TELEWORK_DATA_DIR", str(folder))
    code, out, err = cli(["db", "upgrade"], capsys)
    assert (code, "Traceback" in err) == (0, False)
    assert out.startswith("database schema at revision ")
    assert (folder / "telework.db").is_file()
    assert folder.stat().st_mode & 0o777 == 0o700


def test_redis_url_prefers_the_setting_then_the_published_file(tmp_path: Path) -> None:
    """redis_url(): TELEWORK_REDIS_URL wins; else the URL a running `up` wrote; else one clear error."""
    with_url = ServerSettings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
    without = ServerSettings(data_dir=tmp_path)
    assert redis_url(with_url, "a worker") == "redis://127.0.0.1:1/0"
    with pytest.raises(OperatorError) as caught:
        redis_url(without, "a worker")
    assert str(caught.value) == (
        f"TELEWORK_REDIS_URL: not set and no `telework up` is running with data folder {tmp_path}; "
        "a worker needs the Redis that carries the agents' events (e.g. redis://127.0.0.1:6379/0); "
        "`telework up` starts an embedded Redis and passes it on"
    )
    (tmp_path / "redis.url").write_text("redis://127.0.0.1:2/0\n")
    assert redis_url(without, "a worker") == "redis://127.0.0.1:2/0"
    with pytest.raises(OperatorError, match=r"^TELEWORK_REDIS_URL: not set; the gateway needs"):
        redis_url(without, "the gateway", published=False)


def test_run_command_turns_operator_errors_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """OperatorError -> its message, control characters escaped, and exit 2; a defect keeps its traceback."""

    def fails() -> int:
        raise OperatorError("tenant 'x' does not exist")

    assert run_command("telework admin", fails) == USAGE_ERROR
    assert capsys.readouterr().err == "telework admin: error: tenant 'x' does not exist\n"
    assert run_command("telework x", lambda: None) == 0

    def quotes_a_terminal_escape() -> int:
        raise OperatorError("no source /tmp/\x1b[2Jx\ry\n  second problem")

    assert run_command("telework agent try", quotes_a_terminal_escape) == USAGE_ERROR
    err = capsys.readouterr().err
    assert err == "telework agent try: error: no source /tmp/\\x1b[2Jx\\ry\n  second problem\n"

    def defect() -> int:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_command("telework x", defect)


def test_stop_on_signals_calls_stop_and_restores_the_handler() -> None:
    """SIGTERM and SIGHUP inside the block call stop (on a thread of its own); after the block the
    previous handler is back."""
    before = signal.getsignal(signal.SIGTERM)
    calls: list[str] = []
    with stop_on_signals(lambda: calls.append("stop")):
        signal.raise_signal(signal.SIGTERM)
        wait_until_sync(lambda: calls == ["stop"], 5, what="stop called")
        signal.raise_signal(signal.SIGHUP)  # the terminal closed: a stop too, never a hang-up death
        wait_until_sync(lambda: calls == ["stop", "stop"], 5, what="stop called again")
    assert calls == ["stop", "stop"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_signal_while_the_stop_event_is_locked_does_not_deadlock() -> None:
    """A signal handled while the main thread holds the stop event's lock (inside Event.wait, as when a
    second SIGTERM lands there) returns at once, and the event is set once the lock is free."""
    stop = threading.Event()
    with stop_on_signals(stop.set):
        with stop._cond:  # type: ignore[attr-defined]  # the lock Event.wait holds between its checks
            signal.raise_signal(signal.SIGTERM)  # the handler ran: calling stop.set here would hang
            assert not stop.is_set()
        assert stop.wait(5)


async def test_async_stop_on_signals_sets_the_event() -> None:
    """SIGINT inside the block sets the stop event on the running loop; the handler is removed after."""
    with async_stop_on_signals(asyncio.Event()) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(stop.wait(), 5)
    assert stop.is_set()
    loop = asyncio.get_running_loop()
    assert loop.remove_signal_handler(signal.SIGINT) is False  # nothing left installed


def test_every_server_settings_path_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative data folders are made absolute at load, so children started elsewhere agree."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEWORK_DATA_DIR", "rel")
    assert load_server_settings().data_dir == tmp_path / "rel"


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("TELEWORK_REDIS_URL", "redis://127.0.0.1:99999/0", "Port out of range 0-65535"),
        ("TELEWORK_REDIS_URL", "redis://[::1", "Invalid IPv6 URL"),
        ("TELEWORK_REDIS_URL", "redis://127.0.0.1:6379/abc", "expected a database number after the address"),
        ("TELEWORK_REDIS_URL", "redis://127.0.0.1:6379/0\r\nX", "spaces or control characters"),
        ("TELEWORK_DATABASE_URL", "postgresql://x@[::1/x", "Invalid IPv6 URL"),
        ("TELEWORK_DATABASE_URL", "postgresql://x@127.0.0.1:abc/x", "Port could not be cast to integer"),
    ],
)
def test_malformed_addresses_are_config_errors(key: str, value: str, says: str) -> None:
    """A URL of the right scheme but an unreadable port, host or database number stops start-up."""
    with pytest.raises(ConfigError) as caught:
        load_server_settings_from({key: value})
    assert caught.value.key == key
    assert says in str(caught.value)


def test_a_data_folder_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`db upgrade --data-dir FILE`: one line saying the folder cannot be made, exit 2."""
    (tmp_path / "file").write_text("")
    code, out, err = cli(["db", "upgrade", "--data-dir", str(tmp_path / "file")], capsys)
    assert (code, out) == (USAGE_ERROR, "")
    assert err == (
        f"telework db: error: cannot create the folder of database {tmp_path / 'file' / 'telework.db'}: "
        "File exists\n"
    )


def test_ids_with_a_final_newline_are_refused(tmp_path: Path) -> None:
    """A tenant or agent id ending in a newline is not a slug (`$` alone would let it through)."""
    from storage import accounts
    from storage.db import make_engine, upgrade

    engine = make_engine(sqlite_url(tmp_path))
    upgrade(engine)
    try:
        with pytest.raises(accounts.AccountError):
            accounts.create_tenant(engine, "acme\n", "Acme")
        accounts.create_tenant(engine, "acme", "Acme")
        with pytest.raises(accounts.AccountError):
            accounts.create_agent(engine, "acme", "pc-1\n", None)
    finally:
        engine.dispose()


def test_a_user_with_settings_is_exported_and_erased_from_the_command_line(tmp_path: Path) -> None:
    """In a fresh `telework` process, export-user includes the user's settings rows and erase-user
    removes them (the tables are found even when no other module imported them)."""
    import base64
    import json
    import subprocess
    import sys
    import zipfile

    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEWORK_")}
    env |= {
        "TELEWORK_DATA_DIR": str(tmp_path / "data"),
        "TELEWORK_MASTER_KEY": base64.b64encode(bytes(range(32))).decode(),
    }
    telework = [sys.executable, "-m", "telework"]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*telework, *argv], env=env, capture_output=True, text=True, timeout=60)

    for argv in (
        ["db", "upgrade"],
        ["admin", "tenant", "create", "acme", "--name", "Acme", "--time-zone", "UTC"],
        ["admin", "user", "create", "--tenant", "acme", "bob", "--name", "Bob"],
        ["admin", "settings", "set", "--tenant", "acme", "--user", "bob", "--away-after", "90"],
    ):
        assert run(*argv).returncode == 0, argv
    out = tmp_path / "bob.zip"
    assert run("admin", "export-user", "--tenant", "acme", "bob", "--out", str(out)).returncode == 0
    with zipfile.ZipFile(out) as zf:
        tables = json.loads(zf.read("person.json"))["tables"]
    assert {"user_agent_settings", "agent_settings_change"} <= set(tables)
    erased = run("admin", "erase-user", "--tenant", "acme", "bob", "--yes")
    assert (erased.returncode, "Traceback" in erased.stderr) == (0, False), erased.stderr
    assert "database user_agent_settings: 1 row(s) deleted" in erased.stdout
    assert "database agent_settings_change: 1 row(s) deleted" in erased.stdout
