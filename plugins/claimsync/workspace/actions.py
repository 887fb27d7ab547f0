"""What finance does in the workspace: work an exception, assign it, sign a run off.

Every action is one transaction that changes the current row *and* appends its record
(``recon_exception_event`` with actor, time and note, or a ``signoff`` row); nothing is
ever deleted or overwritten in the history. Each change is a compare-and-set on the state
the user saw, so two people acting at once cannot silently undo each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from claimsync.workspace.errors import Conflict, InvalidInput, NotFound
from claimsync.workspace.filters import clean_owner

NOTE_MAX: Final = 2000
# action → (statuses it applies to, status it sets)
STATUS_ACTIONS: Final[dict[str, tuple[frozenset[str], str]]] = {
    "acknowledge": (frozenset({"open"}), "acknowledged"),
    "resolve": (frozenset({"open", "acknowledged"}), "resolved"),
    "write_off": (frozenset({"open", "acknowledged"}), "written_off"),
    "reopen": (frozenset({"acknowledged", "resolved", "written_off"}), "open"),
}
SIGNOFF_ROLES: Final = ("preparer", "reviewer")
# Only a run that finished cleanly can be signed off.
SIGNABLE_RUN_STATUSES: Final = frozenset({"succeeded"})


@dataclass(frozen=True)
class StatusChange:
    exception_id: int
    action: str
    from_status: str
    to_status: str


def clean_note(note: str | None, *, required: bool) -> str | None:
    """A note as typed: trimmed, at most NOTE_MAX characters, no NUL; required for status changes."""
    text = (note or "").replace("\r\n", "\n").strip()
    if "\x00" in text:
        raise InvalidInput("the note contains a NUL character")
    if len(text) > NOTE_MAX:
        raise InvalidInput(f"the note is {len(text)} characters long; at most {NOTE_MAX} are allowed")
    if not text:
        if required:
            raise InvalidInput("a note is required: say why")
        return None
    return text


def _actor(actor: str) -> str:
    if not actor or len(actor) > 200:
        raise InvalidInput("the acting user's name is not valid")
    return actor


def change_status(engine: Engine, exception_id: int, action: str, actor: str, note: str | None) -> StatusChange:
    """acknowledge / resolve / write_off / reopen one exception, with the reason in ``note``."""
    if action not in STATUS_ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(STATUS_ACTIONS)}; got {action!r}")
    allowed, to_status = STATUS_ACTIONS[action]
    text = clean_note(note, required=True)
    actor = _actor(actor)
    with engine.begin() as conn:
        current = conn.execute(
            sa.text("SELECT status FROM claimsync.recon_exception WHERE id = :id FOR UPDATE"), {"id": exception_id}
        ).scalar()
        if current is None:
            raise NotFound(f"no exception {exception_id}")
        if current not in allowed:
            raise Conflict(f"exception {exception_id} is {current}: it cannot be changed with {action!r}")
        conn.execute(
            sa.text(
                "UPDATE claimsync.recon_exception SET status = :to, note = :note,"
                " resolved_at = CASE WHEN :to IN ('resolved', 'written_off') THEN now() ELSE NULL END"
                " WHERE id = :id AND status = :from"
            ),
            {"to": to_status, "note": text, "id": exception_id, "from": current},
        )
        conn.execute(
            sa.text(
                "INSERT INTO claimsync.recon_exception_event"
                " (exception_id, action, from_status, to_status, actor, note)"
                " VALUES (:id, :action, :from, :to, :actor, :note)"
            ),
            {"id": exception_id, "action": action, "from": current, "to": to_status, "actor": actor, "note": text},
        )
    return StatusChange(exception_id, action, current, to_status)


def assign_owner(engine: Engine, exception_id: int, owner: str | None, actor: str, note: str | None) -> str | None:
    """Give the exception an owner (None or blank unassigns it); returns the new owner."""
    new_owner = clean_owner(owner)
    text = clean_note(note, required=False)
    actor = _actor(actor)
    with engine.begin() as conn:
        row = conn.execute(
            sa.text("SELECT status, owner FROM claimsync.recon_exception WHERE id = :id FOR UPDATE"),
            {"id": exception_id},
        ).one_or_none()
        if row is None:
            raise NotFound(f"no exception {exception_id}")
        if row.owner == new_owner:
            raise Conflict(f"exception {exception_id} already has that owner")
        conn.execute(
            sa.text("UPDATE claimsync.recon_exception SET owner = :owner WHERE id = :id"),
            {"owner": new_owner, "id": exception_id},
        )
        conn.execute(
            sa.text(
                "INSERT INTO claimsync.recon_exception_event"
                " (exception_id, action, from_status, to_status, actor, note, owner)"
                " VALUES (:id, 'assign', :status, :status, :actor, :note, :owner)"
            ),
            {"id": exception_id, "status": row.status, "actor": actor, "note": text, "owner": new_owner},
        )
    return new_owner


def sign_off(engine: Engine, run_id: str, role: str, actor: str, note: str | None) -> None:
    """Sign a finished reconciliation run off as preparer, then (someone else) as reviewer."""
    if role not in SIGNOFF_ROLES:
        raise InvalidInput(f"role must be preparer or reviewer; got {role!r}")
    text = clean_note(note, required=False)
    actor = _actor(actor)
    with engine.begin() as conn:
        run = conn.execute(
            sa.text("SELECT status, flow FROM claimsync.sync_run WHERE run_id = :r FOR UPDATE"), {"r": run_id}
        ).one_or_none()
        if run is None or run.flow != "reconcile":
            raise NotFound(f"no reconciliation run {run_id!r}")
        if run.status not in SIGNABLE_RUN_STATUSES:
            raise Conflict(f"run {run_id} is {run.status}: only a succeeded run can be signed off")
        signed = {
            r.role: r.signed_by
            for r in conn.execute(
                sa.text("SELECT role, signed_by FROM claimsync.signoff WHERE run_id = :r"), {"r": run_id}
            )
        }
        if role in signed:
            raise Conflict(f"run {run_id} is already signed off as {role} by {signed[role]}")
        if role == "reviewer":
            preparer = signed.get("preparer")
            if preparer is None:
                raise Conflict("the preparer signs off first, then the reviewer")
            if preparer.casefold() == actor.casefold():
                raise Conflict("the reviewer must be someone other than the preparer")
        elif "reviewer" in signed and signed["reviewer"].casefold() == actor.casefold():
            raise Conflict("the preparer must be someone other than the reviewer")
        conn.execute(
            sa.text("INSERT INTO claimsync.signoff (run_id, role, signed_by, note) VALUES (:r, :role, :actor, :note)"),
            {"r": run_id, "role": role, "actor": actor, "note": text},
        )
