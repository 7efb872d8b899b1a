"""The `apply` planner: what it takes to make the ledger match a schedules file, pure.

`plan_apply(snapshot, specs, now, ...)` compares the desired schedules (a parsed schedules
file, `adapters/schedules_file.py`) with the snapshot and returns an `ApplyPlan`: one `Change`
per schedule, with the next fire times before and after, and the user commands that carry the
plan out, in the order to execute them. Executing the commands (`domain/handlers.handle`, one
after the other on the folded snapshot) and planning again gives an empty plan.

Rules (also in the README's schedules-file section):

- **Managed schedules.** A file manages the schedules of principal `system:cron`
  (`MANAGED_PRINCIPAL`, the default of `ScheduleSpec.principal`). With `prune`, a managed
  schedule that is not in the file is removed. Schedules of any other principal (`user:...`,
  the daemon's `system:daemon` maintenance) and submitted tasks (queue entries, not schedules)
  are never touched; a file schedule whose id is taken by one of them is an error.
- **Unanchored `every`.** An `every` without an `anchor` means "aligned to when it was
  registered". Such a file schedule (its id in `unanchored`) keeps the stored anchor while the
  stored trigger is an `Every` of the same interval, so re-applying the file is a no-op; a new
  schedule, or a changed interval, is anchored at `now`.
- **Paused state.** `paused[id]` is the desired state where the file gives one; a schedule
  without it keeps whatever an operator set (pause/resume from the CLI stick).
- **Options.** `options` (when given) are the desired engine options; `draining` is never
  changed by a file (it belongs to the daemon's shutdown).
- **Fire lists.** `Change.before` / `Change.after` are the next `fires` instants at which the
  schedule would fire (nominal time plus its deterministic jitter), from the pending next fire
  the way the handlers compute it (an update that keeps the trigger and jitter keeps the pending
  fire; otherwise the next fire after `now`), bounded by the fire limit. A paused schedule fires
  nothing, so its list is empty. An overdue pending fire is listed as is (it is in the past).
- **Order.** Changes: removes (by id), updates, pauses, resumes, adds (in file order), then the
  unchanged ones (file order). Commands: `ChangeOptions` first, then per change in that order;
  an update that also pauses is `PauseSchedule` then `UpdateSchedule` (the new trigger never
  fires before the pause), one that also resumes is `UpdateSchedule` then `ResumeSchedule`; an
  add that is paused is `AddSchedule` then `PauseSchedule` right after it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from cronledger.domain.commands import (
    AddSchedule,
    ChangeOptions,
    PauseSchedule,
    RemoveSchedule,
    ResumeSchedule,
    UpdateSchedule,
    UserCommand,
)
from cronledger.domain.instants import iso
from cronledger.domain.jitter import due_at
from cronledger.domain.state import ScheduleState, Snapshot
from cronledger.domain.triggers import At, Every, Trigger, anchored, next_fire_after
from cronledger.domain.validation import changed_fields
from cronledger.domain.values import Options, ScheduleSpec
from cronledger.errors import InvalidInput

MANAGED_PRINCIPAL = "system:cron"
PAUSE_REASON = "apply"

ACTIONS = ("remove", "update", "pause", "resume", "add", "unchanged")
_RANK = {action: rank for rank, action in enumerate(ACTIONS)}


@attrs.frozen
class Change:
    """What applying the file does to one schedule."""

    action: str  # "add" | "update" | "remove" | "pause" | "resume" | "unchanged"
    schedule_id: str
    fields: tuple[str, ...] = ()  # spec fields that differ (dotted), plus "paused"
    before: tuple[int, ...] = ()  # next fire instants (epoch ms) as things stand
    after: tuple[int, ...] = ()  # next fire instants once the plan is carried out

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "schedule_id": self.schedule_id,
            "fields": list(self.fields),
            "before": [iso(t) for t in self.before],
            "after": [iso(t) for t in self.after],
        }


@attrs.frozen
class ApplyPlan:
    """The changes a schedules file makes, and the commands that make them, in order."""

    changes: tuple[Change, ...]
    commands: tuple[UserCommand, ...]
    options_changed: tuple[str, ...] = ()  # Options fields that differ, when options are given

    @property
    def empty(self) -> bool:
        """Nothing to do: the ledger already matches the file."""
        return not self.commands

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def to_json(self) -> dict[str, object]:
        return {
            "empty": self.empty,
            "summary": {action: self.count(action) for action in ACTIONS},
            "options_changed": list(self.options_changed),
            "changes": [c.to_json() for c in self.changes],
            "commands": [_command_json(c) for c in self.commands],
        }


def plan_apply(
    snapshot: Snapshot,
    specs: Sequence[ScheduleSpec],
    now: int,
    *,
    paused: Mapping[str, bool] | None = None,
    options: Options | None = None,
    unanchored: Collection[str] = frozenset(),
    fires: int = 5,
    prune: bool = True,
) -> ApplyPlan:
    """The plan that makes `snapshot` hold exactly `specs` (see the module docstring).

    `specs` are validated specs in file order (ids unique); `paused` the desired paused state
    by id, where given; `options` the desired engine options, or None to leave them; the ids in
    `unanchored` have an `every` without an explicit anchor; `fires` is how many upcoming fire
    instants each change lists; with `prune`, managed schedules absent from `specs` are removed.
    Raises InvalidInput (field `schedules.ID...`) for a file schedule that cannot be applied.
    """
    wanted = paused or {}
    seen: set[str] = set()
    changes: list[tuple[int, int, Change, tuple[UserCommand, ...]]] = []
    for order, raw in enumerate(specs):
        if raw.id in seen:
            raise InvalidInput(
                f"schedules.{raw.id}", "appears more than once", "give each schedule one table"
            )
        seen.add(raw.id)
        old = snapshot.schedules.get(raw.id)
        spec = _anchored(raw, old, now) if raw.id in unanchored else raw
        want = wanted.get(spec.id)
        if old is None:
            change, commands = _add(spec, want, now, fires)
        else:
            change, commands = _existing(old, spec, want, now, fires)
        changes.append((_RANK[change.action], order, change, commands))

    if prune:
        for schedule_id in sorted(snapshot.schedules.keys()):
            state = snapshot.schedules[schedule_id]
            if schedule_id in seen or state.spec.principal != MANAGED_PRINCIPAL:
                continue
            change = Change("remove", schedule_id, (), _fires_of(state, fires), ())
            changes.append((_RANK["remove"], 0, change, (RemoveSchedule(schedule_id),)))

    changes.sort(key=lambda item: (item[0], item[1], item[2].schedule_id))
    out: list[UserCommand] = []
    options_changed: tuple[str, ...] = ()
    if options is not None:
        target = attrs.evolve(options, draining=snapshot.options.draining)
        options_changed = changed_fields(snapshot.options, target)
        if options_changed:
            out.append(ChangeOptions(target, keep_draining=True))
    for _, _, _, commands in changes:
        out.extend(commands)
    return ApplyPlan(tuple(c for _, _, c, _ in changes), tuple(out), options_changed)


# --- one schedule ---------------------------------------------------------------------------


def _anchored(spec: ScheduleSpec, old: ScheduleState | None, now: int) -> ScheduleSpec:
    """An `every` the file gave no anchor, anchored as the handlers anchor one (`anchored`):
    the stored anchor for the same interval, else `now`."""
    trigger = spec.trigger
    if not isinstance(trigger, Every):
        return spec
    stored = old.spec.trigger if old is not None else None
    kept = anchored(Every(trigger.interval_ms), now, stored)
    return spec if kept == trigger else attrs.evolve(spec, trigger=kept)


def _add(
    spec: ScheduleSpec, want_paused: bool | None, now: int, fires: int
) -> tuple[Change, tuple[UserCommand, ...]]:
    _check_at(spec, now, "is in the past", "choose a future instant, or leave the schedule out")
    if want_paused:
        change = Change("add", spec.id, ("paused",), (), ())
        return change, (AddSchedule(spec), PauseSchedule(spec.id, PAUSE_REASON))
    after = _upcoming(spec, next_fire_after(spec.trigger, now), spec.fire_limit, fires)
    return Change("add", spec.id, (), (), after), (AddSchedule(spec),)


def _existing(
    old: ScheduleState, spec: ScheduleSpec, want_paused: bool | None, now: int, fires: int
) -> tuple[Change, tuple[UserCommand, ...]]:
    if old.spec.principal != spec.principal:
        raise InvalidInput(
            f"schedules.{spec.id}",
            f"a schedule {spec.id!r} owned by {old.spec.principal} already exists, and a file "
            f"manages only {spec.principal} schedules",
            "rename the schedule in the file, or remove the existing one first",
        )
    fields = spec_diff(old.spec, spec)
    pausing = want_paused is True and not old.paused
    resuming = want_paused is False and old.paused
    before = _fires_of(old, fires)
    if fields:
        _check_at(
            spec,
            now,
            "has passed, so this one-shot schedule can no longer be changed",
            "leave its table as it was, or remove it from the file",
        )
    # Where the schedule's next fire will be, computed as handlers.handle does.
    if fields and not (spec.trigger == old.spec.trigger and spec.jitter_ms == old.spec.jitter_ms):
        nominal = next_fire_after(spec.trigger, now)
    else:
        nominal = old.next_fire_at
    if resuming and not (nominal is not None and nominal > now):
        nominal = next_fire_after(spec.trigger, now)
    remaining = None if spec.fire_limit is None else max(0, spec.fire_limit - old.fire_count)
    is_paused = (old.paused or pausing) and not resuming
    after = () if is_paused else _upcoming(spec, nominal, remaining, fires)

    pause = PauseSchedule(spec.id, PAUSE_REASON)
    resume = ResumeSchedule(spec.id)
    if fields:
        extra = ("paused",) if pausing or resuming else ()
        commands: tuple[UserCommand, ...] = (UpdateSchedule(spec),)
        if pausing:
            commands = (pause, *commands)
        if resuming:
            commands = (*commands, resume)
        return Change("update", spec.id, fields + extra, before, after), commands
    if pausing:
        return Change("pause", spec.id, ("paused",), before, after), (pause,)
    if resuming:
        return Change("resume", spec.id, ("paused",), before, after), (resume,)
    return Change("unchanged", spec.id, (), before, after), ()


def _check_at(spec: ScheduleSpec, now: int, problem: str, fix: str) -> None:
    """A one-shot in the past cannot be registered (the handlers refuse it): say so up front."""
    trigger = spec.trigger
    if isinstance(trigger, At) and trigger.instant_ms <= now:
        raise InvalidInput(f"schedules.{spec.id}.at", f"{iso(trigger.instant_ms)} {problem}", fix)


# --- fire lists -----------------------------------------------------------------------------


def _fires_of(state: ScheduleState, fires: int) -> tuple[int, ...]:
    """The next fires of a stored schedule as it stands (none while paused)."""
    if state.paused:
        return ()
    return _upcoming(state.spec, state.next_fire_at, state.fires_remaining, fires)


def _upcoming(
    spec: ScheduleSpec, nominal: int | None, remaining: int | None, fires: int
) -> tuple[int, ...]:
    """Up to `fires` fire instants (nominal + jitter) from the pending nominal `nominal`."""
    limit = fires if remaining is None else min(fires, remaining)
    trigger: Trigger = spec.trigger
    out: list[int] = []
    while nominal is not None and len(out) < limit:
        fire = due_at(spec.id, nominal, spec.jitter_ms)
        assert fire is not None
        out.append(fire)
        nominal = next_fire_after(trigger, nominal)
    return tuple(out)


# --- field differences ----------------------------------------------------------------------


def spec_diff(old: ScheduleSpec, new: ScheduleSpec) -> tuple[str, ...]:
    """Dotted names of what differs between two specs, e.g. ("trigger.expr", "retry.backoff_ms").

    Nested attrs values of the same class are compared field by field; a value that changes
    class (a cron trigger becoming an interval, hours added or dropped) is named as a whole.
    """
    return tuple(_diff(old, new, ""))


def _diff(old: object, new: object, prefix: str) -> Iterable[str]:
    if old == new:
        return
    cls = type(old)
    if type(new) is not cls or not attrs.has(cls):
        yield prefix
        return
    for field in attrs.fields(cls):
        name = f"{prefix}.{field.name}" if prefix else field.name
        yield from _diff(getattr(old, field.name), getattr(new, field.name), name)


def _command_json(command: UserCommand) -> dict[str, object]:
    if isinstance(command, ChangeOptions):
        return {"command": "ChangeOptions"}
    if isinstance(command, AddSchedule | UpdateSchedule):
        return {"command": type(command).__name__, "schedule_id": command.spec.id}
    schedule_id = getattr(command, "schedule_id", None)
    return {"command": type(command).__name__, "schedule_id": schedule_id}
