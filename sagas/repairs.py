"""Compensation repair: when a compensation runs out of attempts the saga fails, and a
person decides what happens next instead of editing the database.

Two actions, each recorded in the history as ``wf.CompensationRepaired``: ``retry`` runs
the compensation again with a fresh retry budget (after the cause was fixed); ``skip``
marks it skipped with a reason (someone undid it by hand, or it no longer matters). The
saga then goes on undoing the older compensations and ends with an honest status:
``compensated`` once all are done or skipped, ``failed`` again if another one runs out.
A request that does not fit (the execution did not fail, the compensation is not the
failed one, a skip without a reason) is refused and leaves no trace in the history.
"""

from __future__ import annotations

from typing import Any, Literal

from sagas.fold import ExecutionRecord

__all__ = ["REPAIR_ACTIONS", "RepairAction", "repair_refusal"]

RepairAction = Literal["retry", "skip"]
REPAIR_ACTIONS: tuple[RepairAction, ...] = ("retry", "skip")


def repair_refusal(
    record: ExecutionRecord, rebuilt: bool, index: Any, action: Any, reason: str
) -> str | None:
    """Why this repair cannot be done now (None: it can)."""
    if action not in REPAIR_ACTIONS:
        return f"a repair is 'retry' or 'skip', not {action!r}"
    if record.logical != "failed":
        return (
            f"{record.address} is {record.status}: only a failed execution has a "
            "compensation to repair"
        )
    if not rebuilt:
        return f"{record.address} cannot be rebuilt by the deployed code, so it cannot be repaired"
    failed = [c.index for c in record.compensations.values() if c.status == "failed"]
    if index not in record.compensations:
        return f"{record.address} has no compensation #{index}; the failed one is #{failed[0]}"
    if index not in failed:
        return f"compensation #{index} did not fail; the failed one is #{failed[0]}"
    if action == "skip" and not reason.strip():
        return "a skip needs a reason: it is recorded in the history"
    return None
