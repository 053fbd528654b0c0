"""``telework agent``: one real session (or simulated agents) until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from agent.client import SessionOptions
from agent.config import AgentConfig, load_agent_config
from telework.config import ConfigError

log = logging.getLogger(__name__)

REFUSED = 2  # exit code when the gateway refused every session (bad token, version)


def options_of(config: AgentConfig) -> SessionOptions:
    return SessionOptions(
        batch_max=config.agent_batch_max,
        backoff_base_s=config.agent_backoff_base_s,
        backoff_cap_s=config.agent_backoff_cap_s,
        open_timeout_s=config.agent_open_timeout_s,
    )


def tokens_of(config: AgentConfig) -> dict[str, str]:
    """The agents to run: every token of the tokens file, or the one token."""
    from agent.simulate import load_tokens

    if config.agent_tokens_file is not None:
        return load_tokens(config.agent_tokens_file)
    if config.agent_token:
        return {"agent": config.agent_token}
    raise ConfigError("TELEWORK_AGENT_TOKEN", "required (or --tokens-file / TELEWORK_AGENT_TOKENS_FILE)")


def run_agent(
    gateway_url: str | None,
    token: str | None,
    tokens_file: Path | None,
    simulate: bool,
    events_per_s: float | None,
) -> int:
    """Run until a signal (exit 0) or until the gateway refused every session (exit 2)."""
    config = load_agent_config(
        gateway_url=gateway_url,
        agent_token=token,
        agent_tokens_file=tokens_file,
        agent_events_per_s=events_per_s,
    )
    tokens = tokens_of(config)
    return asyncio.run(_main(config, tokens, simulate))


async def _main(config: AgentConfig, tokens: dict[str, str], simulate: bool) -> int:
    from agent.client import AgentSession
    from agent.simulate import run_simulation

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    options = options_of(config)
    if simulate:
        sessions = await run_simulation(config.gateway_url, tokens, config.agent_events_per_s, stop, options)
    else:
        log.warning(
            "no capture pipeline yet (a later issue): holding the session with heartbeats only; "
            "use --simulate for scripted events"
        )
        sessions = [AgentSession(config.gateway_url, t, options, name=n) for n, t in tokens.items()]
        runners = [asyncio.create_task(s.run()) for s in sessions]
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, *runners], return_when=asyncio.FIRST_COMPLETED)
        for s in sessions:
            s.stop()
        waiter.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
    if sessions and all(s.fatal is not None for s in sessions):
        raise ConfigError("TELEWORK_AGENT_TOKEN", f"the gateway refused the session: {sessions[0].fatal}")
    return 0
