"""Reload: apply a new Config to a running Supervisor, touching only what changed.

  new service          -> its [instances] start
  changed service      -> its running instances restart one at a time on the new definition;
                          with more than one instance, the next waits until the last is serving
                          again (a replacement that does not come up stops the rollout there)
  unchanged service    -> untouched (its processes, ports and connections stay)
  removed service      -> its instances stop and are forgotten
  new [instances] ids  -> start

The file is read and validated as a whole before anything changes: a config with an error is
refused with the same message as at start, and the running config stays.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

from slum.config import Config
from slum.errors import BadRequest, SlumError
from slum.supervisor.states import ALIVE, State
from slum.supervisor.supervisor import Supervisor

log = logging.getLogger("slum.reload")

# Read by the supervisor for every start, check and stop: a reload applies them at once.
LIVE_SETTINGS = {
    "data_dir",
    "health_check_interval",
    "max_restarts",
    "restart_window",
    "backoff_base_ms",
    "backoff_max_ms",
    "stop_grace_s",
    "max_held_requests",
}


@dataclass
class ReloadResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Changed, but read only when slum starts: they wait for the next start.
    restart_needed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(old: Config, new: Config) -> ReloadResult:
    result = ReloadResult()
    for name, svc in new.services.items():
        current = old.services.get(name)
        if current is None:
            result.added.append(name)
        elif current != svc:
            result.changed.append(name)
        else:
            result.unchanged.append(name)
    result.removed = [name for name in old.services if name not in new.services]
    for key, value in vars(new.settings).items():
        if getattr(old.settings, key) != value and key not in LIVE_SETTINGS:
            result.restart_needed.append(f"settings.{key}")
    return result


async def apply(sup: Supervisor, new: Config) -> ReloadResult:
    result = plan(sup.config, new)
    removed = [i for i in sup.list() if i.service.name in result.removed]
    sup.use_config(new)

    async def stop(inst_id: str) -> None:
        inst = sup.instances[inst_id]
        try:
            if inst.state is not State.STOPPED or inst.want_running:
                await sup.stop(inst_id)
                result.stopped.append(inst_id)
        except SlumError as e:
            result.errors.append(f"{inst_id}: {e.message}")
        # Its task stays parked (never wanted again); the edge no longer finds it.
        sup.instances.pop(inst_id, None)

    async def roll(service: str) -> None:
        svc = new.services[service]
        insts = [i for i in sup.list() if i.service.name == service]
        several = len(insts) > 1
        for inst in insts:
            running = inst.state in ALIVE or inst.state is State.BACKOFF
            inst.service = svc  # what its next start runs
            if not running:
                continue
            try:
                await sup.restart(inst.id)
            except SlumError as e:
                result.errors.append(f"{inst.id}: {e.message}")
                return
            result.restarted.append(inst.id)
            if several and not inst.serving:
                result.errors.append(
                    f"{inst.id}: not serving after its restart ({inst.state.value}"
                    f"{': ' + inst.reason if inst.reason else ''}); the other "
                    f"instances of {service} were left as they were"
                )
                return

    async def start(service: str, name: str) -> None:
        try:
            inst = await sup.spawn(service, name)
        except SlumError as e:
            result.errors.append(f"{service}:{name}: {e.message}")
            return
        result.started.append(inst.id)
        if not inst.serving:
            result.errors.append(f"{inst.id}: {inst.state.value}{': ' + inst.reason if inst.reason else ''}")

    async with trio.open_nursery() as nursery:
        for inst in removed:
            nursery.start_soon(stop, inst.id)
        for service in result.changed:
            nursery.start_soon(roll, service)
        for service, names in new.instances.items():
            if service in result.changed:
                continue  # rolled above; a new id of a changed service starts below
            for name in names:
                known = sup.instances.get(f"{service}:{name}")
                if known is None or not (known.want_running or known.state in ALIVE):
                    nursery.start_soon(start, service, name)
    for service in result.changed:
        for name in new.instances.get(service, ()):
            if f"{service}:{name}" not in sup.instances:
                await start(service, name)
    return result


class Reloader:
    """Serialises reloads and runs each in a nursery of its own, so that a client that hangs up
    halfway (or a second SIGHUP) cannot leave a rollout half done."""

    def __init__(
        self,
        sup: Supervisor,
        load: Callable[[], Config],
        on_applied: Callable[[Config], Awaitable[None]] | None = None,
    ) -> None:
        self.sup = sup
        self.load = load
        self.on_applied = on_applied
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self.reloads = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._on_sighup)
            task_status.started()
            await trio.sleep_forever()

    async def reload(self) -> dict[str, Any]:
        """Read and validate the file (a ConfigError goes to the caller untouched), then apply."""
        assert self._nursery is not None, "Reloader.run must be started first"
        new = await trio.to_thread.run_sync(self.load)
        if new.services and not self.sup.config.services:
            # Started as a fleet router: no watchdog, no capacity for tenants here.
            raise BadRequest(
                "slum was started without services (a fleet router only): restart it to run processes"
            )
        done = trio.Event()
        out: dict[str, Any] = {}

        async def run() -> None:
            try:
                async with self._lock:
                    result = await apply(self.sup, new)
                    if self.on_applied is not None:
                        await self.on_applied(new)
                    self.reloads += 1
                out.update(result.to_dict())
                summary = (
                    f"reloaded: {len(result.added)} added, {len(result.changed)} changed, "
                    f"{len(result.removed)} removed, {len(result.unchanged)} unchanged"
                )
                self.sup.hub.system(
                    None,
                    summary + "".join(f"; {e}" for e in result.errors),
                    "warn" if result.errors else "info",
                )
                log.info("%s", summary)
            except Exception:  # a bug here must not end the supervisor's nursery
                log.exception("reload failed")
                out["errors"] = ["internal error during reload (see slum's log)"]
            finally:
                done.set()

        self._nursery.start_soon(run)
        await done.wait()
        return out

    async def _on_sighup(self) -> None:
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _ in signals:
                try:
                    await self.reload()
                except SlumError as e:
                    log.error("reload refused, the running config stays: %s", e.message)
                    self.sup.hub.system(None, f"reload refused: {e.message}", "error")
