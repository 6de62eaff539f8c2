"""The Supervisor: the set of known instances and the operations on them.

Operations only change what an instance *wants* (running or not) and wait for its task to get
there; the per-instance task in runner.py does the work. So an operation never races a restart.
"""

from __future__ import annotations

from collections.abc import Iterable

import trio

from slum.config import Config, check_label
from slum.errors import Conflict, NotFound, Unavailable
from slum.events import Hub, StateChanged
from slum.supervisor.instance import Instance
from slum.supervisor.runner import Context, Journal, Ports, supervise
from slum.supervisor.states import ALIVE, State

SETTLE_MARGIN_S = 2.0


class Supervisor:
    def __init__(self, config: Config, hub: Hub, journal: Journal) -> None:
        self.config = config
        self.hub = hub
        self.instances: dict[str, Instance] = {}
        self._ctx = Context(config.settings, hub, journal, Ports())
        self._journal = journal
        self._nursery: trio.Nursery | None = None

    async def run(self, known: Iterable[tuple[str, str]] = (), *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the instance tasks. `known` are instances spawned by an earlier run: they stay
        stopped until asked for (a request wakes them)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for service, name in known:
                if service in self.config.services and f"{service}:{name}" not in self.instances:
                    self._add(service, name)
            for service, names in self.config.instances.items():
                for name in names:
                    inst = self.instances.get(f"{service}:{name}") or self._add(service, name)
                    inst.want(True)
            task_status.started()
            await trio.sleep_forever()

    def _add(self, service: str, name: str) -> Instance:
        assert self._nursery is not None, "Supervisor.run must be started first"
        inst = Instance(self.config.services[service], name)
        inst.on_change = self._publish
        self.instances[inst.id] = inst
        self._nursery.start_soon(supervise, inst, self._ctx, name=f"supervise {inst.id}")
        return inst

    def _publish(self, inst: Instance, old: State, new: State) -> None:
        # status, not state: a crash loop reaches the SSE stream and the alert engine as itself
        self.hub.publish(StateChanged(inst.id, inst.previous_status, inst.status, inst.reason))

    def use_config(self, config: Config) -> None:
        """A reload (supervisor/reload.py): services and settings for what starts from now on."""
        self.config = config
        self._ctx.settings = config.settings

    def ensure_known(self, service: str, name: str) -> Instance | None:
        """A tenant placed on this node: known (stopped) until its first request wakes it."""
        inst = self.instances.get(f"{service}:{name}")
        if inst is None and service in self.config.services:
            inst = self._add(service, name)
        return inst

    def get(self, instance_id: str) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is None:
            raise NotFound(f"no instance {instance_id}")
        return inst

    def list(self) -> list[Instance]:
        return sorted(self.instances.values(), key=lambda i: i.id)

    async def spawn(self, service: str, name: str) -> Instance:
        check_label(service, "service name")
        check_label(name, "instance id")
        if service not in self.config.services:
            known = ", ".join(sorted(self.config.services)) or "none configured"
            raise NotFound(f"unknown service {service!r} (services: {known})")
        inst = self.instances.get(f"{service}:{name}")
        if inst is not None and (inst.state in ALIVE or inst.state is State.BACKOFF):
            raise Conflict(f"{inst.id} already exists ({inst.state.value})")
        if inst is None:
            inst = self._add(service, name)
            await self._journal_known(inst)
        self._start(inst)
        await self._settle(inst)
        return inst

    async def _journal_known(self, inst: Instance) -> None:
        remember = getattr(self._journal, "instance_known", None)
        if remember is not None:
            await remember(inst)

    def _start(self, inst: Instance) -> None:
        inst.recent_restarts.clear()
        inst.reason = None
        inst.want(True)

    async def stop(self, instance_id: str) -> Instance:
        inst = self.get(instance_id)
        if inst.state is State.FAILED:
            inst.move(State.STOPPED, "stopped")
            return inst
        if not inst.want_running and inst.state is State.STOPPED:
            raise Conflict(f"{inst.id} is not running")
        inst.reason = "stopped"
        inst.want(False)
        # `not in`, not `is not`: mypy narrows state from the check above across the await.
        while inst.state not in (State.STOPPED, State.FAILED):
            if inst.want_running and inst.state is State.STARTING:
                # A request woke it while it stopped: the process we stopped is gone and a new
                # one is starting. Waiting for `stopped` would wait forever.
                break
            await inst.wait_changed()
        return inst

    async def restart(self, instance_id: str) -> Instance:
        inst = self.get(instance_id)
        if inst.state in ALIVE:
            inst.restart_requested = True
            inst.want(True)
            # Wait for the old process to go, then for the new one to settle.
            while inst.state is not State.STARTING:
                await inst.wait_changed()
        else:
            self._start(inst)
        await self._settle(inst)
        return inst

    async def _settle(self, inst: Instance) -> None:
        """Wait until the instance serves, or clearly will not (bounded by startup_timeout)."""
        with trio.move_on_after(inst.service.startup_timeout + SETTLE_MARGIN_S):
            # First leave the resting state the request found (the task has not run yet).
            while inst.want_running and inst.state in (State.STOPPED, State.FAILED):
                await inst.wait_changed()
            while not inst.serving and inst.state not in (State.FAILED, State.STOPPED,
                                                          State.BACKOFF):
                await inst.wait_changed()

    async def wake(self, inst: Instance) -> Instance:
        """Hold a request until the instance serves: one wake shared by all waiting requests,
        bounded in time (startup_timeout) and in count (max_held_requests)."""
        if inst.state is State.FAILED:
            raise Unavailable(f"{inst.id} has failed: {inst.reason}")
        if inst.held >= self.config.settings.max_held_requests:
            raise Unavailable(f"{inst.id} is starting and too many requests are waiting")
        inst.held += 1
        try:
            if not inst.want_running:
                inst.wakes += 1
                self.hub.system(inst.id, "waking on request")
                self._start(inst)
            with trio.fail_after(inst.service.startup_timeout):
                while not inst.serving:
                    # A tuple, as in stop(): mypy would narrow state across the await.
                    if inst.state in (State.FAILED,) or not inst.want_running:
                        raise Unavailable(f"{inst.id} could not start: {inst.reason}")
                    await inst.wait_changed()
        except trio.TooSlowError:
            raise Unavailable(f"{inst.id} did not become ready within "
                              f"{inst.service.startup_timeout:g}s") from None
        finally:
            inst.held -= 1
        return inst

    def statistics(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for inst in self.instances.values():
            counts[inst.state.value] = counts.get(inst.state.value, 0) + 1
        return counts
