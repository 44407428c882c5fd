"""Reference connectors: six fake business systems over SQLite, built on the connector SDK.

Each system (orders, crm, telephony, marketing, web, cctv) is one SQLite file under a
data dir, seeded deterministically with fake customers (``seed_customers``), so an
erasure really deletes rows, a restriction really flags them and an export really writes
a file. The event generator (``privops.tools.simulate``) publishes events with the same
identifiers, so tasks privops builds from its identity map find these rows.

The parts: ``people`` (the fake customers), ``specs`` (each system's tables),
``rows`` (what each table holds about a customer), ``store`` (the SQLite file and what
it does with a task, a legal hold and deletion by age), ``exports`` (where exports go
and the locations reported), ``connectors`` (the SDK's contract over a store, with knobs).
Answers: retained (kept categories and their grounds) when anything with rows was kept,
else completed, not_found when the identifiers match nothing; an export answers
completed with ExportReference(location, record_count, checksum="sha256:<hex>"), the
location below the system's export root in the data map (``exports``).
"""

from __future__ import annotations

from privops.connectors.reference.connectors import (
    REFERENCE_CONNECTORS,
    CctvConnector,
    CrmConnector,
    Knobs,
    MarketingConnector,
    OrdersConnector,
    PurgeHook,
    ReferenceConnector,
    TelephonyConnector,
    WebConnector,
    reference_connector,
)
from privops.connectors.reference.exports import (
    ExportPlace,
    UnsafeRequestId,
    export_place,
    exported_file,
)
from privops.connectors.reference.people import (
    MAX_CUSTOMERS,
    FakeCall,
    FakeClip,
    FakeConsent,
    FakeCredit,
    FakeCustomer,
    FakeMessage,
    FakeOrder,
    default_anchor,
    seed_customers,
)
from privops.connectors.reference.specs import SPECS, StoreSpec, TableSpec
from privops.connectors.reference.store import (
    EraseReport,
    PurgeReport,
    ReferenceStore,
    open_store,
    seed_stores,
    store_path,
)

__all__ = [
    "MAX_CUSTOMERS",
    "REFERENCE_CONNECTORS",
    "SPECS",
    "CctvConnector",
    "CrmConnector",
    "EraseReport",
    "ExportPlace",
    "FakeCall",
    "FakeClip",
    "FakeConsent",
    "FakeCredit",
    "FakeCustomer",
    "FakeMessage",
    "FakeOrder",
    "Knobs",
    "MarketingConnector",
    "OrdersConnector",
    "PurgeHook",
    "PurgeReport",
    "ReferenceConnector",
    "ReferenceStore",
    "StoreSpec",
    "TableSpec",
    "TelephonyConnector",
    "UnsafeRequestId",
    "WebConnector",
    "default_anchor",
    "export_place",
    "exported_file",
    "open_store",
    "reference_connector",
    "seed_customers",
    "seed_stores",
    "store_path",
]
