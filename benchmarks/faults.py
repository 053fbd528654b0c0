"""Fault-matrix benchmark: agents keep sending while every part of the system is SIGKILLed in turn.

Starts a private redis-server (AOF, ``appendfsync everysec``) and a private PostgreSQL cluster,
``telework db upgrade``, G gateways behind a round-robin TCP balancer, W persistence workers, the
builder, agent processes (``faults.py agent``: real ``AgentSession`` s with their own spools), two
canary agents and a hostile agent (``faults.py hostile``) sending a malformed or out-of-range frame
every few seconds. Then, every ``--kill-every`` seconds, it SIGKILLs in turn a worker, the builder,
a gateway, Redis (restarted on its AOF), PostgreSQL (restarted: crash recovery) or an agent process
(restarted on its spools), restarts it at once and measures the recovery: seconds from the restart
until the restarted process runs and an event emitted after the restart is stored, and, for server
faults, built into an interval (the canaries' events; for an agent fault, every restarted agent's);
for a gateway, also until the restarted gateway itself opens a session (hello -> welcome,
heartbeat answered). A child that dies by itself is restarted too (counted in ``unplanned_exits``).

At the end the agents stop emitting and the benchmark waits (bounded) until every spool is empty
and both consumer groups hold nothing of a valid agent; then it counts against the database.

    .venv/bin/python benchmarks/faults.py --quick
    .venv/bin/python benchmarks/faults.py --agents 200 --seconds 180 --rate 0.5 --kill-every 15

Prints a table per fault kind and per poison kind, then one line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import print_result, wait_ready
from fault_agents import agent_main, hostile_main, read_acks
from fault_counting import (
    FaultKill,
    RunFacts,
    acked_total,
    emitted_seqs,
    report,
    tally_events,
    tally_poison,
)
from fault_procs import ChildProcess, PrivatePostgres, PrivateRedis, RoundRobinProxy, tail
from fault_store import (
    dead_letters,
    gateway_serves,
    groups_settled,
    newest_seqs,
    poison_sent,
    spool_state,
    stored_rows,
)

from realtime import keys
from realtime.embedded_redis import free_port
from storage.accounts import create_agent, create_tenant
from storage.db import make_engine

log = logging.getLogger("benchmarks.faults")
HERE = Path(__file__).resolve()
FAULT_KINDS = ("worker", "builder", "gateway", "redis", "postgres", "agents")
GROUPS = (keys.PERSIST_GROUP, "build")
TENANT = "faults"
HOSTILE = "hostile"
PROBE = "probe"  # the agent whose short sessions check that a restarted gateway serves
RECOVERY_LIMIT_S = 10.0
PRESETS: dict[str, dict[str, Any]] = {
    "full": {"agents": 200, "seconds": 180.0, "kill_every": 15.0, "agent_procs": 4, "drain_timeout": 150.0},
    "quick": {"agents": 30, "seconds": 45.0, "kill_every": 6.0, "agent_procs": 2, "drain_timeout": 90.0},
}


class FaultCluster:
    """Every process of one run, the faults inflicted on them and the counting at the end."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True)
        self.rng = random.Random(args.seed)
        self.redis = PrivateRedis(work / "redis", free_port(), self.logs / "redis.log")
        self.pg = PrivatePostgres(work / "pg", free_port(), self.logs / "postgres.log")
        self.gateway_ports = [free_port() for _ in range(args.gateways)]
        self.proxy = RoundRobinProxy(self.gateway_ports)
        self.quiesce = work / "quiesce"
        self.spools = work / "spools"
        self.acks = work / "acks"
        self.acks.mkdir()
        self.hostile_log = work / "hostile.jsonl"
        self.children: list[ChildProcess] = [self.redis, self.pg]
        self.gateways: list[ChildProcess] = []
        self.workers: list[ChildProcess] = []
        self.agent_procs: list[ChildProcess] = []
        self.clients: list[ChildProcess] = []  # agent processes, canary, hostile: stopped first
        self.agents_of: dict[str, list[str]] = {}  # agent process name -> its agent ids
        self.canaries: list[str] = []
        self.unplanned: list[str] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEWORK_")}
        self.env = {
            **env,
            "TELEWORK_REDIS_URL": self.redis.url,
            "TELEWORK_DATABASE_URL": self.pg.url,
            "TELEWORK_DATA_DIR": str(work / "data"),
            "TELEWORK_LOG_LEVEL": "WARNING",
        }
        if args.claim_idle_ms:
            self.env["TELEWORK_CLAIM_IDLE_MS"] = str(args.claim_idle_ms)

    @property
    def valid_agents(self) -> list[str]:
        return [a for ids in self.agents_of.values() for a in ids]

    # ------------------------------------------------------------------ start

    def telework(self, name: str, *argv: str) -> ChildProcess:
        child = ChildProcess(
            name, [sys.executable, "-m", "telework", *argv], self.env, self.logs / f"{name}.log"
        )
        self.children.append(child)
        return child

    def bench_child(self, name: str, *argv: str) -> ChildProcess:
        child = ChildProcess(name, [sys.executable, str(HERE), *argv], self.env, self.logs / f"{name}.log")
        self.children.append(child)
        self.clients.append(child)
        return child

    def set_up(self) -> None:
        """Redis, PostgreSQL, the schema, the tenant and its agents, the server processes."""
        self.redis.start()
        self.redis.wait_ready()
        self.pg.init()
        with (self.logs / "db-upgrade.log").open("wb") as out:
            subprocess.run(
                [sys.executable, "-m", "telework", "db", "upgrade"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, check=True,
            )  # fmt: skip
        engine = make_engine(self.pg.url)
        try:
            create_tenant(engine, TENANT, "Fault matrix")
            n = self.args.agents
            ids = [f"a{i:04d}" for i in range(n)]
            tokens = {a: create_agent(engine, TENANT, a) for a in ids}
            self.canaries = ["canary-0", "canary-1"]
            tokens |= {a: create_agent(engine, TENANT, a) for a in self.canaries}
            self._probe_token = create_agent(engine, TENANT, PROBE)
            hostile_token = create_agent(engine, TENANT, HOSTILE)
        finally:
            engine.dispose()
        for i, port in enumerate(self.gateway_ports):
            self.gateways.append(self.telework(f"gateway-{i}", "gateway", "--port", str(port)))
        self.workers = [self.telework(f"worker-{i}", "worker") for i in range(self.args.workers)]
        self.builder = self.telework("builder", "builder")
        for child in self.children[2:]:
            child.start()
        procs = max(1, min(self.args.agent_procs, n))
        groups = {f"agents-{p}": ids[p::procs] for p in range(procs)}
        groups["canary"] = self.canaries
        self.agents_of = groups
        self._tokens = tokens
        self._hostile_token = hostile_token

    async def start_clients(self) -> None:
        """The balancer, then the agent processes, the canaries and the hostile agent."""
        for port in self.gateway_ports:
            await wait_ready(port, 60)
        port = await self.proxy.start()
        url = f"ws://127.0.0.1:{port}/v1/agent"
        for name, ids in self.agents_of.items():
            canary = name == "canary"
            specs = [{"agent": a, "token": self._tokens[a], "url": url} for a in ids]
            spec_path = self.work / f"{name}.json"
            spec_path.write_text(json.dumps(specs))
            rate = self.args.canary_rate if canary else self.args.rate
            child = self.bench_child(
                name, "agent", "--specs", str(spec_path), "--spools", str(self.spools),
                "--acks", str(self.acks / f"{name}.json"), "--quiesce", str(self.quiesce),
                "--rate", str(rate), "--tasks-every", "0" if canary else "5", "--seed", str(self.args.seed),
            )  # fmt: skip
            if not canary:
                self.agent_procs.append(child)
            child.start()
        token_path = self.work / "hostile.token"
        token_path.write_text(self._hostile_token)
        hostile = self.bench_child(
            HOSTILE, "hostile", "--url", url, "--token-file", str(token_path),
            "--out", str(self.hostile_log), "--quiesce", str(self.quiesce),
            "--every", str(self.args.poison_every), "--seed", str(self.args.seed),
        )  # fmt: skip
        hostile.start()

    # ------------------------------------------------------------- supervise

    async def supervise(self) -> None:
        """Restart every child that died by itself (as a restart policy would), a second later."""
        while True:
            for child in self.children:
                if child.busy or child.alive():
                    continue
                code = child.exit_code()
                self.unplanned.append(f"{child.name} (exit {code})")
                log.warning("%s exited by itself with %s; restarting it", child.name, code)
                child.busy = True
                try:
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(child.start)
                finally:
                    child.busy = False
            await asyncio.sleep(0.5)

    # ----------------------------------------------------------------- faults

    def target(self, kind: str) -> ChildProcess:
        pools: dict[str, list[ChildProcess]] = {
            "worker": self.workers,
            "builder": [self.builder],
            "gateway": self.gateways,
            "redis": [self.redis],
            "postgres": [self.pg],
            "agents": self.agent_procs,
        }
        return self.rng.choice(pools[kind])

    def next_seqs(self, agents: list[str]) -> dict[str, int]:
        """Each agent's next unused seq: an event it emits from now on has at least this seq."""
        return {a: spool_state(self.spools / a / "spool-v1.sqlite3")[0] for a in agents}

    async def inflict(self, kind: str) -> FaultKill:
        """SIGKILL one process of ``kind``, restart it at once, measure the recovery."""
        child = self.target(kind)
        child.busy = True
        try:
            await asyncio.to_thread(child.kill)
            probes = self.next_seqs(self.agents_of[child.name] if kind == "agents" else self.canaries)
            restarted = time.monotonic()
            await asyncio.to_thread(child.start)
        finally:
            child.busy = False
        port = self.gateway_ports[self.gateways.index(child)] if kind == "gateway" else None
        recovery = await self.wait_healthy(child, probes, kind != "agents", restarted, port)
        shown = "not within the timeout" if recovery is None else f"in {recovery:.2f} s"
        log.info("killed %s (%s): healthy again %s", child.name, kind, shown)
        return FaultKill(kind, child.name, recovery)

    async def wait_healthy(
        self, child: ChildProcess, probes: dict[str, int], built: bool, since: float, port: int | None
    ) -> float | None:
        """Seconds from ``since`` until the restarted ``child`` runs, every probe agent is healthy
        and (``port``) that gateway opens a session."""
        deadline = since + self.args.recovery_timeout
        serving = port is None
        while time.monotonic() < deadline:
            if port is not None and not serving:
                serving = await gateway_serves(port, self._probe_token)
            if serving and child.alive() and await asyncio.to_thread(self.healthy, probes, built):
                return time.monotonic() - since
            await asyncio.sleep(0.2)
        return None

    def healthy(self, probes: dict[str, int], built: bool) -> bool:
        """Every probe agent has an event of at least its seq stored (``built``: that starts an interval)."""
        have = newest_seqs(self.pg.conninfo, TENANT, list(probes), built)
        return have is not None and all(have.get(agent, 0) >= seq for agent, seq in probes.items())

    async def warm_up(self, timeout_s: float = 120.0) -> None:
        """Until every valid agent has its first event stored."""
        probes = dict.fromkeys(self.valid_agents, 1)
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(self.healthy, probes, False):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every agent had an event stored within {timeout_s:g} s")
            await asyncio.sleep(0.5)

    async def fault_phase(self) -> list[FaultKill]:
        kinds = [k for k in FAULT_KINDS if k in self.args.faults]
        kills: list[FaultKill] = []
        end = time.monotonic() + self.args.seconds
        next_kill = time.monotonic() + min(self.args.kill_every, 5.0)
        while True:
            await asyncio.sleep(max(0.0, next_kill - time.monotonic()))
            if time.monotonic() >= end:
                return kills
            kills.append(await self.inflict(kinds[len(kills) % len(kinds)]))
            next_kill = max(next_kill + self.args.kill_every, time.monotonic() + 1.0)

    # ------------------------------------------------------------------ drain

    def drained(self) -> bool:
        """Every spool empty, both groups caught up, nothing of a valid agent pending."""
        if any(spool_state(self.spools / a / "spool-v1.sqlite3")[1] for a in self.valid_agents):
            return False
        return groups_settled(self.redis.port, TENANT, GROUPS, {HOSTILE})

    async def drain(self) -> tuple[bool, float]:
        self.quiesce.touch()
        start = time.monotonic()
        while time.monotonic() - start < self.args.drain_timeout:
            await asyncio.sleep(1.0)
            if await asyncio.to_thread(self.drained):
                return True, time.monotonic() - start
        return False, time.monotonic() - start

    # ----------------------------------------------------------------- count

    def count(self) -> dict[str, Any]:
        """The figures, from the spools, the acks reports, the database and the dead-letter stream."""
        emitted = {
            a: emitted_seqs(spool_state(self.spools / a / "spool-v1.sqlite3")[0]) for a in self.valid_agents
        }
        acks = [read_acks(p) for p in sorted(self.acks.glob("*.json"))]
        self.pg.wait_ready()
        rows = stored_rows(self.pg.conninfo, TENANT)
        dead = dead_letters(self.redis.port, TENANT)
        sent = poison_sent(self.hostile_log)
        tally = tally_events(emitted, rows, dead, {HOSTILE})
        poison = tally_poison(
            sent,
            {r.event_id for r in rows if r.agent_id == HOSTILE},
            {d.event_id for d in dead if d.agent_id == HOSTILE and d.event_id is not None},
        )
        return {"tally": tally, "poison": poison, "acked": acked_total(acks, set(emitted))}

    # ---------------------------------------------------------------- stop

    def stop_clients(self) -> None:
        """The agent processes, canaries and hostile agent (they write their acks reports)."""
        for child in self.clients:
            child.busy = True
            child.stop(10)

    def stop(self) -> None:
        """Clients first, then the servers; SIGKILL what hangs."""
        self.stop_clients()
        for child in reversed(self.children):
            child.busy = True
            if child in (self.pg, self.redis):
                child.kill()
            else:
                child.stop(10)

    def tails(self) -> str:
        return "\n".join(f"----- {c.log_path.name}\n{tail(c.log_path)}" for c in self.children)


async def run(args: argparse.Namespace, work: Path, cluster: FaultCluster) -> dict[str, Any]:
    log.info("work folder %s", work)
    await asyncio.to_thread(cluster.set_up)
    supervisor: asyncio.Task[None] | None = None
    try:
        await cluster.start_clients()
        supervisor = asyncio.create_task(cluster.supervise())
        await cluster.warm_up()
        log.info("%d agents sending; faults every %g s for %g s", args.agents, args.kill_every, args.seconds)
        kills = await cluster.fault_phase()
        load_1m = os.getloadavg()[0]  # the 2-core machine is shared: slow recoveries may be contention
        drained, drain_s = await cluster.drain()
        log.info("drain %s after %.1f s", "complete" if drained else "NOT complete", drain_s)
        await asyncio.to_thread(cluster.stop_clients)
        counted = await asyncio.to_thread(cluster.count)
    finally:
        if supervisor is not None:
            supervisor.cancel()
        await cluster.proxy.stop()
    facts = RunFacts(
        kills=kills,
        acked=counted["acked"],
        restarts=sum(c.starts - 1 for c in cluster.children),
        unplanned=cluster.unplanned,
        drained=drained,
        drain_s=drain_s,
        load_avg_1m=load_1m,
        timeout_s=args.recovery_timeout,
        limit_s=RECOVERY_LIMIT_S,
    )
    text, figures = report(counted["tally"], counted["poison"], facts, FAULT_KINDS)
    print(text + "\n")
    return {"agents": args.agents, "seconds": args.seconds, "rate_per_agent": args.rate, **figures}


def main_run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 agents, 45 s, a fault every 6 s")
    parser.add_argument("--agents", type=int, help="valid agents (default 200)")
    parser.add_argument("--seconds", type=float, help="length of the fault phase (default 180)")
    parser.add_argument("--rate", type=float, default=0.5, help="events/s per agent")
    parser.add_argument("--canary-rate", type=float, default=2.0, help="events/s per canary agent")
    parser.add_argument("--kill-every", type=float, help="seconds between faults (default 15)")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="fault kinds, in turn")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--agent-procs", type=int, help="processes the agents are spread over (default 4)")
    parser.add_argument("--poison-every", type=float, default=3.0, help="seconds between hostile frames")
    parser.add_argument("--recovery-timeout", type=float, default=30.0)
    parser.add_argument("--drain-timeout", type=float, help="longest wait for the drain (default 150)")
    parser.add_argument("--claim-idle-ms", type=int, help="TELEWORK_CLAIM_IDLE_MS of the workers")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, spools, data)")
    args = parser.parse_args(argv)
    for key, value in PRESETS["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.faults = [k.strip() for k in args.faults.split(",") if k.strip()]
    unknown = sorted(set(args.faults) - set(FAULT_KINDS))
    if unknown or not args.faults:
        parser.error(
            f"--faults: expected some of {', '.join(FAULT_KINDS)}, got {', '.join(unknown) or 'none'}"
        )
    if args.agents < 1 or args.seconds <= 0 or args.rate <= 0 or args.kill_every <= 0 or args.gateways < 1:
        parser.error("--agents, --seconds, --rate, --kill-every and --gateways must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="tw-faults-"))
    work.chmod(0o755)  # the PostgreSQL cluster runs as the postgres user inside it
    cluster = FaultCluster(args, work)
    keep = args.keep
    done = False

    def clean_up() -> None:
        nonlocal done
        if done:
            return
        done = True
        cluster.stop()
        if keep:
            log.info("work folder kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    atexit.register(clean_up)
    signal.signal(signal.SIGTERM, on_term)
    try:
        result = asyncio.run(run(args, work, cluster))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop everything, no figures
        clean_up()
        log.info("interrupted; every process stopped")
        sys.exit(130)
    except Exception:  # a failure: keep the folder and show the logs
        keep = True
        print(cluster.tails(), file=sys.stderr)
        raise
    finally:
        clean_up()
    print_result(result)


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] == "agent":
        agent_main(argv[1:])
    elif argv and argv[0] == "hostile":
        hostile_main(argv[1:])
    else:
        main_run(argv)


if __name__ == "__main__":
    main()
