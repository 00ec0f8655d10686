"""The values the canonical event's enumerations are known to take (pure data).

Kinds and request sides are closed: orderbridge makes them. Statuses, event
names and request kinds are Tradecloud's and open-ended (api-facts §1.4, §3.3):
an event carries whatever value arrives, never rejecting one. These lists are
for the people who write route filters: a filter naming a value outside them
is almost always a typo (``Confimed``, ``orders``) that would silently match
nothing, so ``routes.toml`` refuses it at load and names the list; a value
Tradecloud adds later is allowed by listing it in the file's ``[known_values]``.
"""

from __future__ import annotations

from typing import Final, get_args

from shared.schema.models import Kind

KINDS: Final[tuple[str, ...]] = get_args(Kind)

REQUEST_SIDES: Final = ("buyer", "supplier")

REQUEST_KINDS: Final = ("proposal", "reopen_request")
"""``requests.proposal`` and ``requests.reopenRequest`` in snake_case."""

REQUEST_STATUSES: Final = ("Open", "Approved", "Rejected", "Closed")

LINE_PROCESS_STATUSES: Final = (
    "Issued",
    "InProgress",
    "Confirmed",
    "Rejected",
    "Completed",
    "Cancelled",
)

LINE_IN_PROGRESS_STATUSES: Final = (
    "OpenSupplierProposal",
    "RejectedSupplierProposal",
    "ReissuedRejectedLine",
    "OpenBuyerReopenRequest",
    "OpenSupplierReopenRequest",
    "OpenBuyerReconfirmationRequest",
    "OpenSupplierShipmentRescheduleRequest",
    "ApprovedDeliverySchedule",
    "RejectedDeliverySchedule",
    "RevertedCompletedLine",
    "RevertedCancelledLine",
)

LOGISTICS_STATUSES: Final = ("Open", "Produced", "ReadyToShip", "Shipped", "Delivered", "Cancelled")

ORDER_EVENT_NAMES: Final = (
    "OrderIssuedByBuyer",
    "OrderLinesIssuedByBuyer",
    "OrderLinesReissuedByBuyer",
    "OrderLinesUpdatedByBuyer",
    "OrderLinesAcceptedBySupplier",
    "OrderLinesRejectedBySupplier",
    "OrderLinesConfirmedByBuyer",
    "OrderLinesConfirmedBySupplier",
    "OrderChangesProposedBySupplier",
    "OrderChangesProposalApprovedByBuyer",
    "OrderChangesProposalRejectedByBuyer",
    "OrderLinesUpdatedBySupplier",
    "OrderLinesItemDetailsChanged",
    "OrderLinesItemDetailsChangedBySupplier",
    "OrderLinesReopenRequestedByBuyer",
    "OrderLinesReopenRequestRevertedByBuyer",
    "OrderLinesReopenRequestApprovedBySupplier",
    "OrderLinesReopenRequestRejectedBySupplier",
    "OrderLinesReopenRequestedBySupplier",
    "OrderLinesReopenRequestRevertedBySupplier",
    "OrderLinesReopenRequestApprovedByBuyer",
    "OrderLinesReopenRequestRejectedByBuyer",
    "OrderLinesReconfirmationRequestedByBuyer",
    "OrderLinesReconfirmedBySupplier",
    "OrderLinesCancelledByBuyer",
    "CancelledOrderLinesRevertedByBuyer",
    "OrderLinesCompletedByBuyer",
    "CompletedOrderLinesRevertedByBuyer",
    "OrderLinesMarkedAsOpenByBuyer",
    "OrderLinesMarkedAsOpenBySupplier",
    "OrderLinesShippedByBuyer",
    "OrderLinesMarkedAsDeliveredByBuyer",
    "OrderLinesMarkedAsDeliveredBySupplier",
    "OrderLinesDeliveryHistoryAppendedByBuyer",
    "OrderLinesDeliveryHistorySetByBuyer",
    "OrderLinesDeliveryScheduleLogisticsUpdatedByBuyer",
    "OrderLinesDeliveryScheduleLogisticsUpdatedBySupplier",
    "OrderLinesShipmentRescheduleRequestedBySupplier",
    "OrderLinesShipmentRescheduleApprovedByBuyer",
    "OrderLinesShipmentRescheduleRejectedByBuyer",
    "OrderContactReassignedByBuyer",
    "OrderContactReassignedBySupplier",
    "OrderResentByBuyer",
    "OrderResentBySupplier",
    "OrderCustomLabelsUpdatedByBuyer",
    "OrderCustomLabelsUpdatedBySupplier",
    "OrderSynced",
)

ORDER_DOCUMENTS_EVENT_NAMES: Final = (
    "OrderDocumentsAttachedByBuyer",
    "OrderDocumentsAttachedBySupplier",
)

SHIPMENT_EVENT_NAMES: Final = (
    "ShipmentIssuedBySupplier",
    "ShipmentReissuedBySupplier",
    "ShipmentApprovedByBuyer",
    "ShipmentRejectedByBuyer",
    "ShipmentHeaderUpdatedBySupplier",
    "ShipmentDocumentAttachedByBuyer",
    "ShipmentDocumentAttachedBySupplier",
    "ShipmentResentByBuyer",
)

EVENT_NAMES: Final = ORDER_EVENT_NAMES + ORDER_DOCUMENTS_EVENT_NAMES + SHIPMENT_EVENT_NAMES
"""Tradecloud's webhook ``eventName`` values (null for polls, GET webhooks and Apicbase)."""
