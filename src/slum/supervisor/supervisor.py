"""The Supervisor: the set of known instances and the operations on them.

Operations only change what an instance *wants* (running or not) and wait for its task to get
there; the per-instance task in runner.py does the work. So an operation never races a restart.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import trio

from slum.config import DNS_LABEL, Config, check_label
from slum.errors import BadRequest, Conflict, NotFound, Unavailable
from slum.events import Hub, StateChanged
from slum.supervisor.cgroups import Cgroups
from slum.supervisor.instance import Instance
from slum.supervisor.lease import Lease
from slum.supervisor.runner import Context, Journal, Ports, supervise
from slum.supervisor.states import ALIVE, State
from slum.supervisor.storage import run_measurements

SETTLE_MARGIN_S = 2.0
MAX_WEIGHT = 100


class Supervisor:
    def __init__(self, config: Config, hub: Hub, journal: Journal, cgroups: Cgroups | None = None) -> None:
        self.config = config
        self.hub = hub
        self.instances: dict[str, Instance] = {}
        self.cgroups = cgroups if cgroups is not None else Cgroups.detect("anon")
        # service -> its instances: what `{service}.{domain}` chooses among by weight.
        self.by_service: dict[str, list[Instance]] = {name: [] for name in config.services}
        self._ctx = Context(config.settings, hub, journal, Ports(*config.settings.port_range), self.cgroups)
        self._journal = journal
        self._nursery: trio.Nursery | None = None
        self._auto_spawned: dict[str, deque[float]] = {}

    async def run(
        self,
        known: Iterable[tuple[Any, ...]] = (),
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own the instance tasks. `known` are instances spawned by an earlier run: they stay
        stopped until asked for (a request wakes them)."""
        try:
            await self._run(known, task_status)
        finally:
            with trio.CancelScope(shield=True):
                # The instances' own cgroups went with their tasks: only the subtree is left.
                await trio.to_thread.run_sync(self.cgroups.close)

    async def _run(self, known: Iterable[tuple[Any, ...]], task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for service, name, *weight in known:
                if service in self.config.services and f"{service}:{name}" not in self.instances:
                    inst = self._add(service, name)
                    if weight:
                        inst.weight = weight[0]
            for service, names in self.config.instances.items():
                for name in names:
                    started = self.instances.get(f"{service}:{name}") or self._add(service, name)
                    started.want(True)
            if any(svc.storage_quota_mb for svc in self.config.services.values()):
                nursery.start_soon(
                    run_measurements,
                    self.list,
                    self.config.settings.data_dir,
                    lambda inst, text: self.hub.system(inst.id, text, "warn"),
                )
            task_status.started()
            await trio.sleep_forever()

    def _add(self, service: str, name: str) -> Instance:
        assert self._nursery is not None, "Supervisor.run must be started first"
        inst = Instance(self.config.services[service], name)
        inst.on_change = self._publish
        self.instances[inst.id] = inst
        self.by_service.setdefault(service, []).append(inst)
        self._nursery.start_soon(supervise, inst, self._ctx, name=f"supervise {inst.id}")
        return inst

    def _publish(self, inst: Instance, old: State, new: State) -> None:
        # status, not state: a crash loop reaches the SSE stream and the alert engine as itself
        self.hub.publish(
            StateChanged(inst.id, inst.previous_status, inst.status, inst.reason, state=new.value)
        )

    def use_config(self, config: Config) -> None:
        """A reload (supervisor/reload.py): services and settings for what starts from now on."""
        self.config = config
        self._ctx.settings = config.settings
        for name in config.services:
            self.by_service.setdefault(name, [])

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

    async def spawn(self, service: str, name: str, *, weight: int | None = None) -> Instance:
        """Start service:name. One that already serves (or is on its way) is left alone: a
        spawn is idempotent, so scripts may repeat it."""
        self._check_service(service)
        check_label(name, "instance id")
        inst = self.instances.get(f"{service}:{name}")
        if inst is not None and inst.want_running and (inst.state in ALIVE or inst.state is State.BACKOFF):
            if inst.state is State.STARTING:
                await self._settle(inst)
            return inst
        if inst is None:
            inst = self._add(service, name)
            await self._journal_known(inst)
        if weight is not None:
            inst.weight = weight
        self._start(inst)
        await self._settle(inst)
        return inst

    def _check_service(self, service: str) -> None:
        check_label(service, "service name")
        if service not in self.config.services:
            known = ", ".join(sorted(self.config.services)) or "none configured"
            raise NotFound(f"unknown service {service!r} (services: {known})")

    async def _journal_known(self, inst: Instance) -> None:
        remember = getattr(self._journal, "instance_known", None)
        if remember is not None:
            await remember(inst)

    async def _journal_weights(self, *instances: Instance) -> None:
        remember = getattr(self._journal, "instance_weight", None)
        if remember is not None:
            for inst in instances:
                await remember(inst)

    def _start(self, inst: Instance) -> None:
        inst.stop_requested = False
        inst.recent_restarts.clear()
        inst.reason = None
        inst.want(True)

    async def stop(self, instance_id: str) -> Instance:
        inst = self.get(instance_id)
        if inst.state is State.FAILED or (not inst.want_running and inst.state is State.SLEEPING):
            # At rest already: its runner turns FAILED or SLEEPING into STOPPED, the operator's
            # word shown as such.
            inst.stop_requested = True
            inst.want(False)
            while inst.state in (State.FAILED, State.SLEEPING) and not inst.want_running:
                await inst.wait_changed()
            return inst
        if not inst.want_running and inst.state is State.STOPPED:
            raise Conflict(f"{inst.id} is not running")
        inst.reason = "stopped"
        inst.want(False)
        # `not in`, not `is not`: mypy narrows state from the check above across the await.
        while inst.state not in (State.STOPPED, State.SLEEPING, State.FAILED):
            if inst.want_running and inst.state is State.STARTING:
                # A request woke it while it stopped: the process we stopped is gone and a new
                # one is starting. Waiting for `stopped` would wait forever.
                break
            await inst.wait_changed()
        return inst

    async def restart(self, instance_id: str) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is None:
            # A configured service's id never spawned: restarting it means starting it.
            service, _, name = instance_id.partition(":")
            if service in self.config.services and DNS_LABEL.fullmatch(name):
                return await self.spawn(service, name)
            raise NotFound(f"no instance {instance_id}")
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
            while inst.want_running and inst.state in (State.STOPPED, State.SLEEPING, State.FAILED):
                await inst.wait_changed()
            while not inst.serving and inst.state not in (
                State.FAILED,
                State.STOPPED,
                State.SLEEPING,
                State.BACKOFF,
            ):
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
            raise Unavailable(
                f"{inst.id} did not become ready within {inst.service.startup_timeout:g}s"
            ) from None
        finally:
            inst.held -= 1
        return inst

    def lease(self, inst: Instance) -> Lease:
        """A request's hold on inst, for `async with`: wakes it, counts the stream, touches it at
        both ends, and retries a send refused by a process that just died (supervisor/lease.py)."""
        return Lease(self, inst)

    # --- tenement's deploys: weights over a service's instances ---
    async def set_weight(self, instance_id: str, weight: int) -> Instance:
        inst = self.get(instance_id)
        inst.weight = check_weight(weight)
        self.hub.system(inst.id, f"weight {weight}")
        await self._journal_weights(inst)
        return inst

    async def route(self, service: str, source: str, target: str) -> tuple[Instance, Instance]:
        """Blue/green: all of source's weight goes to target in one step (no await between the
        two writes, so no request sees both at 0 or both at full). Source keeps running."""
        self._check_service(service)
        old = self.get(f"{service}:{check_label(source, 'instance id')}")
        new = self.get(f"{service}:{check_label(target, 'instance id')}")
        if old is new:
            raise BadRequest("--from and --to are the same instance")
        # A sleeping target is fine (the next request wakes it); a stopped or failed one is not.
        if new.state is State.FAILED or (new.state is State.STOPPED and not new.want_running):
            raise Conflict(
                f"{new.id} is {new.state.value}: deploy it first (`slum deploy {service} --version {target}`)"
            )
        old.weight, new.weight = 0, MAX_WEIGHT
        self.hub.system(new.id, f"route: all traffic of {service} moved from {old.id}")
        await self._journal_weights(old, new)
        return old, new

    async def deploy(
        self, service: str, version: str, *, weight: int = MAX_WEIGHT, timeout_s: float = 30
    ) -> Instance:
        """Start service:version at weight 0, wait until it is healthy, then give it its weight.
        If it does not get healthy, it is stopped and the versions already serving keep their
        weights: a bad deploy never takes traffic."""
        self._check_service(service)
        check_label(version, "version")
        check_weight(weight)
        inst = self.instances.get(f"{service}:{version}")
        fresh = inst is None or not inst.serving
        if inst is None:
            inst = self._add(service, version)
            await self._journal_known(inst)
        if fresh:
            inst.weight = 0
            await self._journal_weights(inst)
            self._start(inst)
        with trio.move_on_after(timeout_s):
            while not inst.serving and inst.state is not State.FAILED and inst.want_running:
                await inst.wait_changed()
        if not inst.serving:
            why = inst.reason or f"not healthy within {timeout_s:g}s"
            if inst.state is not State.FAILED and inst.want_running:
                why = f"not healthy within {timeout_s:g}s ({inst.state.value})"
            if fresh and inst.want_running:
                await self.stop(inst.id)
            raise Unavailable(f"deploy of {inst.id} failed: {why}; the running versions keep their traffic")
        inst.weight = weight
        self.hub.system(inst.id, f"deployed with weight {weight}")
        await self._journal_weights(inst)
        return inst

    # --- what a request for a host becomes ---
    async def for_request(self, service: str, name: str) -> Instance:
        """`{id}.{service}.{domain}` for an id not known here: started when the service has
        auto_spawn, within its max_instances and auto_spawn_per_minute."""
        svc = self.config.services.get(service)
        if svc is None:
            raise NotFound(f"no instance {service}:{name}")
        if not svc.auto_spawn:
            raise NotFound(
                f"no instance {service}:{name} (to start new ids of {service} on "
                f"their first request, set `auto_spawn = true` in [service.{service}]"
                f"; or `slum spawn {service}:{name}`)"
            )
        if not DNS_LABEL.fullmatch(name):
            raise NotFound(f"no instance {service}:{name}: ids are DNS labels")
        inst = self.instances.get(f"{service}:{name}")
        if inst is not None:
            return inst
        if svc.max_instances and len(self.by_service.get(service, ())) >= svc.max_instances:
            raise Unavailable(
                f"{service} has max_instances = {svc.max_instances} instances: no room for {name}"
            )
        now = time.monotonic()
        recent = self._auto_spawned.setdefault(service, deque())
        while recent and recent[0] < now - 60:
            recent.popleft()
        per_minute = self.config.settings.auto_spawn_per_minute
        if len(recent) >= per_minute:
            raise Unavailable(
                f"{service} started {per_minute} new ids in the last minute "
                "(auto_spawn_per_minute): try again shortly"
            )
        recent.append(now)
        inst = self._add(service, name)
        self.hub.system(inst.id, "auto_spawn: first request for a new id")
        await self._journal_known(inst)
        return inst

    def statistics(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for inst in self.instances.values():
            counts[inst.state.value] = counts.get(inst.state.value, 0) + 1
        return counts


def check_weight(weight: object) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
        raise BadRequest(f"invalid weight {weight!r}: use an integer from 0 to {MAX_WEIGHT}")
    return weight
