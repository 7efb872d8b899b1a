"""Commands, imperative: what a user asks of the engine, and what a tick asks of the runners."""

from __future__ import annotations

import attrs

from cronledger.domain.values import Options, ScheduleSpec, Target

# --- from users (handled by domain/handlers.py into facts) ----------------------------------


@attrs.frozen
class AddSchedule:
    spec: ScheduleSpec


@attrs.frozen
class UpdateSchedule:
    spec: ScheduleSpec


@attrs.frozen
class PauseSchedule:
    schedule_id: str
    reason: str = ""


@attrs.frozen
class ResumeSchedule:
    schedule_id: str


@attrs.frozen
class RemoveSchedule:
    schedule_id: str


@attrs.frozen
class TriggerSchedule:
    schedule_id: str


@attrs.frozen(kw_only=True)
class SubmitTask:
    target: Target
    priority: int = 0
    hold: str | None = None
    max_attempts: int = 1
    backoff_ms: int = 1000
    max_backoff_ms: int = 3_600_000
    timeout_ms: int | None = None
    principal: str = "system:daemon"


@attrs.frozen
class HoldEntry:
    entry_id: str
    reason: str = "manual_hold"


@attrs.frozen
class ReleaseEntry:
    entry_id: str
    reason: str = "manual_release"


@attrs.frozen
class CancelEntry:
    entry_id: str
    reason: str = "operator"


@attrs.frozen
class ChangeOptions:
    """Set the engine options. `keep_draining`: leave draining as it is in force when the
    command is handled (a schedules file never changes it; a drain recorded after the file
    was planned stays)."""

    options: Options
    keep_draining: bool = False


UserCommand = (
    AddSchedule
    | UpdateSchedule
    | PauseSchedule
    | ResumeSchedule
    | RemoveSchedule
    | TriggerSchedule
    | SubmitTask
    | HoldEntry
    | ReleaseEntry
    | CancelEntry
    | ChangeOptions
)

# --- from a tick to the runners (carried out by the imperative shell) -----------------------


@attrs.frozen(kw_only=True)
class StartRun:
    """Spawn the run whose RunAssigned intent is durable."""

    run_id: str
    entry_id: str
    schedule_id: str | None
    attempt: int
    target: Target
    argv: tuple[str, ...]
    scheduled_for: int | None
    deadline: int | None
    fallback_argv: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class CancelRun:
    """Stop a running run (SIGTERM, then SIGKILL after a grace period)."""

    run_id: str
    reason: str


RunnerCommand = StartRun | CancelRun
