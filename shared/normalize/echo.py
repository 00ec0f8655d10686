"""Echo classification for polled Tradecloud orders (api-facts §4).

While a request we opened (a proposal, reopen, reschedule or reconfirmation) is
still open, a poll returns the *old* Issued/Confirmed values of that line. An
ERP that wrote them back would undo its own change. This module only labels
such lines; deciding what to do with them is the consumer route's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from shared.schema.models import EchoInfo, EchoPolicy, OrderLine, Role

OWN_OPEN_REQUESTS: Final[dict[Role, frozenset[str]]] = {
    "buyer": frozenset({"OpenBuyerReopenRequest", "OpenBuyerReconfirmationRequest"}),
    "supplier": frozenset(
        {
            "OpenSupplierProposal",
            "OpenSupplierReopenRequest",
            "OpenSupplierShipmentRescheduleRequest",
        }
    ),
}


def is_echo(
    role: Role | None, policy: EchoPolicy, process_status: str | None, in_progress: str | None
) -> bool:
    """Whether a line with these statuses reflects our own open request back at us."""
    if policy == "off" or process_status != "InProgress":
        return False
    if policy == "all-in-progress":
        return True
    return role is not None and in_progress in OWN_OPEN_REQUESTS[role]


def summarize(lines: Sequence[OrderLine], role: Role | None, policy: EchoPolicy) -> EchoInfo:
    """The event-level echo summary of already classified lines.

    Lines whose ``changed`` is unknown (None) count as changed: without a cursor
    every line is news.
    """
    echo_ids = [
        line.line_id or line.position or str(i) for i, line in enumerate(lines) if line.echo
    ]
    changed = [line for line in lines if line.changed is not False]
    return EchoInfo(
        role=role,
        policy=policy,
        lines=echo_ids,
        all_changed_lines_echo=bool(changed) and all(line.echo for line in changed),
    )
