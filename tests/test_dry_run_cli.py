"""`telework agent try` through the real CLI: the table and the CSV, the agent's variables, real time,
one-line errors (exit 2), odd inputs, a light parser."""

from __future__ import annotations

import csv
import io
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.face.dlib_engine import DlibEngine
from agent.face.templates import Template
from telework.cli import main
from tests.dry_run_world import crops, engine, scene_files, template
from tests.faces import FACES, needs_faces

__all__ = ["crops", "engine", "scene_files", "template"]  # fixtures
ROOT = Path(__file__).resolve().parent.parent


@needs_faces
def test_try_prints_the_timeline_and_writes_the_csv(
    scene_files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`telework agent try --source folder:... --template ... --away-after 4 --csv F`: exit 0, a
    header, the table of changes, the summary, and the same rows in F (0600)."""
    out_csv = tmp_path / "timeline.csv"
    code = main(_try(scene_files, "--away-after", "4", "--csv", str(out_csv)))
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"source folder:{scene_files / 'frames'}: 2 frames/s as fast as read; engine dlib"
    assert lines[1].startswith("settings: threshold_level 3 (distance 0.4), analysis_fps 2, away_after_s 4,")
    assert lines[2].split()[:4] == ["time", "t_s", "change", "rule"]
    assert [_change(line) for line in lines[3:8]] == [
        "- -> present",
        "present -> peeking",
        "peeking -> present",
        "present -> away",
        "away -> impersonation",
    ]
    assert lines[8].startswith("52 frames (0-25.5 s of source time) analysed in ")
    assert lines[8].endswith(
        "5 state changes; time in states: present 13 s, peeking 4 s, away 5 s, impersonation 2.5 s"
    )
    assert lines[9:] == [f"timeline written to {out_csv} (5 rows)"]
    assert stat.S_IMODE(out_csv.stat().st_mode) == 0o600
    records = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    assert [(r["t_s"], r["from"], r["to"]) for r in records] == [
        ("1.0", "", "present"),
        ("5.0", "present", "peeking"),
        ("9.0", "peeking", "present"),
        ("18.0", "present", "away"),
        ("23.0", "away", "impersonation"),
    ]


def _try(folder: Path, *more: str) -> list[str]:
    """The argv of `telework agent try` on the scene's frames with the user's template."""
    return [
        "agent",
        "try",
        "--source",
        f"folder:{folder / 'frames'}",
        "--template",
        str(folder / "user.json"),
        *more,
    ]


def _change(line: str) -> str:
    """The ``from -> to`` cell of a table line."""
    words = line.split()
    arrow = words.index("->")
    return " ".join(words[arrow - 1 : arrow + 2])


@needs_faces
def test_try_reads_the_agents_variables(
    scene_files: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TELEWORK_AGENT_SOURCE and _TEMPLATE stand for the flags; --duration and --threshold-level apply."""
    monkeypatch.setenv("TELEWORK_AGENT_SOURCE", f"folder:{scene_files / 'frames'}")
    monkeypatch.setenv("TELEWORK_AGENT_TEMPLATE", str(scene_files / "user.json"))
    code = main(["agent", "try", "--duration", "4", "--threshold-level", "5"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[1].startswith("settings: threshold_level 5 (distance 0.35),")
    assert [_change(line) for line in lines[3:-1]] == ["- -> present"]
    assert lines[-1].startswith("8 frames (0-3.5 s of source time) analysed in ")


@needs_faces
def test_try_realtime_plays_at_the_real_pace(scene_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--realtime: 2 s of a folder at 2 fps take at least the 1.5 s between its first and last frame."""
    code = main(_try(scene_files, "--realtime", "--duration", "2"))
    out, _err = capsys.readouterr()
    lines = out.splitlines()
    assert code == 0
    assert lines[0].endswith(": 2 frames/s in real time; engine dlib")
    summary_line = lines[-1]
    assert summary_line.startswith("4 frames (0-1.5 s of source time) analysed in ")
    elapsed = float(summary_line.split(" analysed in ")[1].split(" s,")[0])
    assert elapsed >= 1.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--source", "folder:/nonexistent/frames", "--template", "T"],
            "TELEWORK_AGENT_SOURCE: image folder not found: /nonexistent/frames",
        ),
        (
            ["--source", "bogus:x"],
            "TELEWORK_AGENT_SOURCE: --source: expected webcam[:INDEX], video:PATH, folder:PATH or "
            "scene:demo, got 'bogus:x'",
        ),
        ([], "TELEWORK_AGENT_SOURCE: required (or --camera INDEX)"),
        (
            ["--source", "folder:F"],
            "TELEWORK_AGENT_TEMPLATE: required with --source (enroll first: telework agent enroll)",
        ),
        (
            ["--source", "folder:F", "--template", "/nonexistent.json"],
            "TELEWORK_AGENT_TEMPLATE: face template not found: /nonexistent.json "
            "(enroll first: telework agent enroll)",
        ),
        (
            ["--source", "folder:F", "--template", "T", "--csv", "/"],
            "--csv /: expected a file name, got a folder",
        ),
        (
            ["--source", "folder:F", "--template", "T", "--csv", "/proc/nope/out.csv"],
            "--csv /proc/nope/out.csv: cannot write the timeline there: No such file or directory",
        ),
    ],
)
def test_try_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad source, a missing template, an unwritable CSV: one line naming what is wrong, exit 2."""
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.full((48, 64, 3), 128, np.uint8))
    template = tmp_path / "user.json"
    Template("dlib", DlibEngine.model_version, (np.ones(128, np.float32) / np.sqrt(128),)).save(template)
    argv = [
        a.replace("folder:F", f"folder:{folder}")
        if a.startswith("folder:F")
        else str(template)
        if a == "T"
        else a
        for a in argv
    ]
    code = main(["agent", "try", *argv])
    out, err = capsys.readouterr()
    assert (code, out, err) == (2, "", f"telework agent: error: {message}\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--threshold-level", "9"],
            "argument --threshold-level: threshold_level: expected an integer from 1 to 5, got '9'",
        ),
        (
            ["--away-after", "nan"],
            "argument --away-after: away_after_s: expected a number from 1 to 3600, got 'nan'",
        ),
        (["--duration", "0"], "argument --duration: expected seconds above 0 and at most 366 days, got '0'"),
        (
            ["--duration", "1e400"],
            "argument --duration: expected seconds above 0 and at most 366 days, got '1e400'",
        ),
    ],
)
def test_try_bad_flags_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out-of-range or non-detection flags: one line saying what was expected, exit 2."""
    with pytest.raises(SystemExit) as exited:
        main(["agent", "try", "--source", "folder:x", *argv])
    out, err = capsys.readouterr()
    assert (exited.value.code, out) == (2, "")
    assert err == f"telework agent try: error: {message} (see telework agent try --help)\n"


def test_try_has_no_flag_for_other_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """A pushed setting that does not change detection (heartbeat) is no flag of `try`: exit 2."""
    with pytest.raises(SystemExit) as exited:
        main(["agent", "try", "--source", "folder:x", "--heartbeat-interval", "5"])
    out, err = capsys.readouterr()
    assert (exited.value.code, out) == (2, "")
    assert err == "telework: error: unrecognized arguments: --heartbeat-interval 5 (see telework --help)\n"


def test_try_on_odd_images_skips_the_unreadable_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder of a 1x1 image, a 16-bit grey one, a 20000 px wide RGBA strip, a text file named .png
    and a truncated JPEG: the readable three are analysed, the others skipped; exit 0."""
    folder = tmp_path / "odd"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(folder / "2.png"), np.full((40, 30), 40_000, np.uint16))
    cv2.imwrite(str(folder / "3.png"), np.zeros((10, 20_000, 4), np.uint8))
    (folder / "4.png").write_bytes(b"not a png")
    (folder / "5.jpg").write_bytes(b"\xff\xd8\xff" + bytes(100))
    template = tmp_path / "user.json"
    Template("dlib", DlibEngine.model_version, (np.ones(128, np.float32) / np.sqrt(128),)).save(template)
    code = main(["agent", "try", "--source", f"folder:{folder}", "--template", str(template)])
    out, _err = capsys.readouterr()
    assert code == 0
    assert out.splitlines()[-1].startswith("3 frames (0-1 s of source time) analysed in ")
    assert out.splitlines()[-1].endswith("; 0 state changes")


def test_try_help_and_a_light_parser() -> None:
    """`telework agent try --help` answers; building the parser imports neither OpenCV nor numpy."""
    done = subprocess.run(
        [sys.executable, "-m", "telework", "agent", "try", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: telework agent try")
    code = (
        "import sys\nfrom telework.cli import build_parser\nbuild_parser()\n"
        "print('cv2' in sys.modules, 'numpy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout, done.stderr) == (0, "False False\n", "")


@needs_faces
def test_a_template_of_another_size_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A template whose embeddings have 5 values (not the engine's 128), met at the first face: one line
    naming the template and the sizes, exit 2, no traceback."""
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(FACES / "obama" / "1.jpg", folder / "0.jpg")
    template = tmp_path / "odd.json"
    Template("dlib", DlibEngine.model_version, (np.ones(5, np.float32) / np.sqrt(5),)).save(template)
    code = main(["agent", "try", "--source", f"folder:{folder}", "--template", str(template)])
    err = capsys.readouterr().err
    assert (code, err) == (
        2,
        f"telework agent: error: template {template}: embedding has 128 values, the template's have 5\n",
    )
