"""``telework agent``: the desktop agent, its enrollment, and commands for the running agent."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.logs import printable
from core.private import PRIVATE_UMASK
from telework.cli_base import Parser, log_level, positive_int, setup, table


def cmd_agent(args: argparse.Namespace) -> int:
    os.umask(PRIVATE_UMASK)  # the spool, templates, images, CSVs: personal data, the user's only
    dry_run = getattr(args, "agent_command", None) == "try"  # its table on stdout: only warnings logged
    setup(args, log_level(args, "WARNING") if dry_run else None)
    if getattr(args, "agent_command", None) == "enroll":
        from agent.run import run_enroll

        accepted, rejected = run_enroll(args.out, args.from_files, args.webcam, args.count)
        for line in rejected:
            print(f"rejected {line}")
        print(f"template with {accepted} image(s) written to {args.out}")
        return 0
    command = getattr(args, "agent_command", None)
    if command == "try":
        return _agent_try(args)
    if command in ("punch", "task", "page", "cameras"):
        return _agent_control(args, command)
    source = args.source or os.environ.get("TELEWORK_AGENT_SOURCE", "").strip() or None
    camera = args.camera if args.camera is not None else os.environ.get("TELEWORK_AGENT_CAMERA", "").strip()
    if (source is not None or camera not in (None, "")) and not args.simulate:
        from agent.run import run_monitor

        return run_monitor(
            args.gateway_url, args.token, source, args.template, args.evidence_dir, args.fast,
            camera=args.camera, resolution=args.resolution, page_port=args.page_port,
            data_dir=getattr(args, "data_dir", None),
        )  # fmt: skip
    from agent.run import run_agent

    return run_agent(args.gateway_url, args.token, args.tokens_file, args.simulate, args.events_per_s)


def _agent_try(args: argparse.Namespace) -> int:
    """``telework agent try``: the pipeline on a source without a gateway, its timeline printed."""
    from agent.dry_run import TryRequest, run_try
    from agent.dry_run_text import COLUMNS, cells, summary

    overrides = {
        k[len(SETTING) :]: v for k, v in vars(args).items() if k.startswith(SETTING) and v is not None
    }
    request = TryRequest(
        args.source, args.template, overrides, csv_path=args.csv, realtime=args.realtime,
        duration_s=args.duration, camera=args.camera, resolution=args.resolution, engine=args.engine,
    )  # fmt: skip
    from agent.face.templates import TemplateError
    from core.errors import OperatorError

    try:
        played = run_try(request, lambda line: print(printable(line), flush=True))
    except TemplateError as exc:  # e.g. embeddings of another size than the engine's: one line, exit 2
        raise OperatorError(f"template {args.template}: {exc}") from None
    for line in table(COLUMNS, [cells(row) for row in played.rows]):
        print(line)
    print(summary(played))
    if args.csv is not None:
        print(printable(f"timeline written to {args.csv} ({len(played.rows)} rows)"))
    return 0


def _agent_control(args: argparse.Namespace, command: str) -> int:
    """punch / task / page / cameras: commands for the running agent (or the camera list)."""
    if command == "cameras":
        from agent.cameras import describe, list_cameras

        for line in describe(list_cameras(args.max_index)):
            print(line)
        return 0
    from agent.run import page_url, run_punch

    if command == "page":
        print(page_url(getattr(args, "data_dir", None)))
        return 0
    if command == "punch":
        code, message = run_punch(args.direction, None, getattr(args, "data_dir", None))
    elif args.action == "start":
        code, message = run_punch("task_start", args.name, getattr(args, "data_dir", None))
    else:
        code, message = run_punch("task_end", None, getattr(args, "data_dir", None))
    print(message, file=sys.stdout if code == 0 else sys.stderr)
    return code


def add_parsers(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "agent",
        help="run the desktop agent (or simulated agents)",
        description="Run the agent's session with the gateway: the face pipeline on a frame source "
        "(--source), or scripted events (--simulate).",
    )
    p.add_argument("--gateway-url", help="ws(s)://host:port/v1/agent (env TELEWORK_GATEWAY_URL)")
    p.add_argument("--token", help="agent token (env TELEWORK_AGENT_TOKEN)")
    p.add_argument("--simulate", action="store_true", help="send scripted teleworker days")
    p.add_argument(
        "--tokens-file",
        type=Path,
        help="JSON {agent_id: token} or [token]: one simulated agent each (env TELEWORK_AGENT_TOKENS_FILE)",
    )
    p.add_argument(
        "--events-per-s", type=float, help="events per second per agent (env TELEWORK_AGENT_EVENTS_PER_S)"
    )
    p.add_argument(
        "--source",
        metavar="SOURCE",
        help="run the face pipeline on webcam[:INDEX], video:PATH, folder:PATH or scene:demo "
        "(env TELEWORK_AGENT_SOURCE)",
    )
    p.add_argument(
        "--template", type=Path, help="the user's face template file (env TELEWORK_AGENT_TEMPLATE)"
    )
    p.add_argument(
        "--evidence-dir",
        type=Path,
        help="folder for evidence images (env TELEWORK_AGENT_EVIDENCE_DIR; default: user data dir/evidence)",
    )
    p.add_argument(
        "--fast", action="store_true", help="play files and scenes as fast as read, not in real time"
    )
    p.add_argument(
        "--camera", type=positive_int(0), metavar="INDEX",
        help="webcam to use (see telework agent cameras); alone it means --source webcam:INDEX "
        "(env TELEWORK_AGENT_CAMERA)",
    )  # fmt: skip
    p.add_argument(
        "--resolution", metavar="WxH", help="webcam resolution, e.g. 1280x720 (env TELEWORK_AGENT_RESOLUTION)"
    )
    p.add_argument(
        "--page-port", type=positive_int(0), metavar="PORT",
        help="port of the local page on 127.0.0.1; 0: any (env TELEWORK_AGENT_PAGE_PORT; default 8765)",
    )  # fmt: skip
    _agent_data_dir(p)
    p.set_defaults(func=cmd_agent, agent_command=None)
    sub2 = p.add_subparsers(dest="agent_command", metavar="COMMAND", parser_class=Parser)
    c = sub2.add_parser(
        "punch",
        help="punch work start (in) or end (out) through the running agent, verified by face",
        description="Punch work start/end: the running agent accepts it only while it sees your face.",
    )
    c.add_argument("direction", choices=["in", "out"], help="in: start work; out: end work")
    _agent_data_dir(c)
    c.set_defaults(func=cmd_agent)
    c = sub2.add_parser(
        "task",
        help="start or end a task through the running agent, verified by face",
        description="Start a task (one the server offers you) or end the current one.",
    )
    ts = c.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)
    t = ts.add_parser("start", help="start a task", description="Start a task by name.")
    t.add_argument("name", help="task name")
    _agent_data_dir(t)
    t.set_defaults(func=cmd_agent)
    t = ts.add_parser("end", help="end the current task", description="End the current task.")
    _agent_data_dir(t)
    t.set_defaults(func=cmd_agent)
    c = sub2.add_parser(
        "page", help="print the URL of the running agent's local page", description="Print the page's URL."
    )
    _agent_data_dir(c)
    c.set_defaults(func=cmd_agent)
    c = sub2.add_parser(
        "cameras", help="list the cameras and their properties", description="List cameras: index, size, fps."
    )
    c.add_argument("--max-index", type=positive_int(0), default=4, help="highest index tried (default 4)")
    c.set_defaults(func=cmd_agent)
    _add_try_parser(sub2)
    e = sub2.add_parser(
        "enroll",
        help="make the user's face template from photos or the webcam",
        description="Enroll the user's face: each image passes a quality gate (one face, large, "
        "bright and sharp enough); the accepted ones make the template.",
    )
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-files", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    src.add_argument(
        "--webcam", nargs="?", type=int, const=0, metavar="INDEX", help="capture from a camera (default 0)"
    )
    e.add_argument("--count", type=positive_int(1), default=5, help="webcam images to accept (default 5)")
    e.add_argument("--out", type=Path, required=True, help="template file to write")
    e.set_defaults(func=cmd_agent)


def _agent_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, default=argparse.SUPPRESS,
        help="the agent's data folder (control.json, duty.json; env TELEWORK_AGENT_DATA_DIR)",
    )  # fmt: skip


SETTING = "s_"  # argparse dest prefix of a detection setting flag of `agent try`


def _add_try_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    from agent.dry_run_text import TRY_FIELDS
    from realtime.protocol.agent_settings import flag_of
    from telework.cli_settings import flag_help, metavar, value_type

    t = sub.add_parser(
        "try",
        help="run the face pipeline on a source without a gateway and print the state timeline",
        description="A dry run for tuning a camera or the detection settings: the face pipeline on "
        "SOURCE without a gateway, then every state change with its decision trace (rule, time held, "
        "faces with distance and size, brightness) as a table, and optionally as CSV. Files, folders "
        "and scenes play as fast as read (--realtime: at their real pace), a webcam in real time "
        "until Ctrl-C or --duration. The agent's TELEWORK_AGENT_* variables apply; the detection "
        "settings default to the server's defaults and can be set here.",
    )
    t.add_argument(
        "--source", metavar="SOURCE",
        help="webcam[:INDEX], video:PATH, folder:PATH or scene:demo (env TELEWORK_AGENT_SOURCE)",
    )  # fmt: skip
    t.add_argument("--template", type=Path, help="the user's face template (env TELEWORK_AGENT_TEMPLATE)")
    t.add_argument("--csv", type=Path, metavar="FILE", help="also write the timeline to FILE as CSV (0600)")
    t.add_argument("--realtime", action="store_true", help="play files and scenes at their real pace")
    t.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop after this much source time")
    t.add_argument(
        "--engine",
        choices=["auto", "dlib", "insightface"],
        help="face engine (env TELEWORK_AGENT_FACE_ENGINE)",
    )
    t.add_argument(
        "--camera", type=positive_int(0), metavar="INDEX",
        help="webcam to use; alone it means --source webcam:INDEX (env TELEWORK_AGENT_CAMERA)",
    )  # fmt: skip
    t.add_argument("--resolution", metavar="WxH", help="webcam resolution (env TELEWORK_AGENT_RESOLUTION)")
    for field in TRY_FIELDS:
        t.add_argument(
            flag_of(field), dest=SETTING + field, type=value_type(field), metavar=metavar(field),
            help=flag_help(field),
        )  # fmt: skip
    t.set_defaults(func=cmd_agent)


def _seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 366 * 86_400:
        raise argparse.ArgumentTypeError(f"expected seconds above 0 and at most 366 days, got {text!r}")
    return value
