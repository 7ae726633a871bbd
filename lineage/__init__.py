"""lineage: an append-only provenance and lineage store for machine-learning training data.

Data flows one way: ingest -> versions -> snapshot -> review -> load -> train -> model version;
trace walks it back. Every public function takes the store first::

    from lineage import open_store, ingest_digits, verify_store
    store = open_store("sqlite:///lineage.db", actor="alice")
    ingest_digits(store)
    verify_store(store)

Training code gets arrays only through ``load_snapshot`` (approved, unrevoked, digest verified).
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("lineage")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# The store, its errors and its integrity check.
from lineage.errors import (AlreadyExistsError, AppendOnlyError, BadInputError, GateFailedError,
                            IntegrityError, LineageError, NotFoundError, QuarantineError,
                            RefusedError, SchemaOutdatedError, SnapshotNotApprovedError)
from lineage.store import Store, open_store, upgrade_store
from lineage.log import list_events
from lineage.verify import verify_store
# ingest: sources and raw rows.
from lineage.sources import add_source, get_source, list_sources, review_source
from lineage.ingest import (IngestInfo, ingest_arrays, ingest_csv, ingest_digits, ingest_npz,
                            list_ingests)
# versions: transformations and what they did.
from lineage.transforms import (SplitResult, TransformResult, append_ingest, dedupe_rows,
                                filter_rows, import_external_edit, inject_trigger, relabel_rows,
                                split_version)
from lineage.versions import export_version, list_versions, show_version
from lineage.coverage import CoverageReport, get_coverage, version_coverage
# snapshot -> review -> load.
from lineage.snapshots import (create_snapshot, get_snapshot, list_snapshots, load_snapshot,
                               reject_snapshot, revoke_snapshot)
from lineage.policy import get_policy, set_policy
from lineage.gates import approve_snapshot
# train -> model version.
from lineage.training import (export_model, get_model, list_models, load_model, release_model,
                              train)
# trace walks it back.
from lineage.trace import RowTrace, VersionDiff, trace_row, version_diff
from lineage.training import trace_model
# The poisoning lab: detectors, scans and audits.
from lineage.detectors import DETECTORS, combine, scan_rows, trigger_visibility
from lineage.audit import audit_poisoned, audit_sources, list_scans, scan_version
from lineage.lab import LabSettings, run_arrays, run_demo

__all__ = [
    "AlreadyExistsError", "AppendOnlyError", "BadInputError", "GateFailedError", "IntegrityError",
    "LineageError", "NotFoundError", "QuarantineError", "RefusedError", "SchemaOutdatedError",
    "SnapshotNotApprovedError", "Store", "open_store", "upgrade_store", "list_events",
    "verify_store",
    "add_source", "get_source", "list_sources", "review_source", "IngestInfo", "ingest_arrays",
    "ingest_csv", "ingest_digits", "ingest_npz", "list_ingests",
    "SplitResult", "TransformResult", "append_ingest", "dedupe_rows", "filter_rows",
    "import_external_edit", "inject_trigger", "relabel_rows", "split_version", "export_version",
    "list_versions", "show_version", "CoverageReport", "get_coverage", "version_coverage",
    "create_snapshot", "get_snapshot", "list_snapshots", "load_snapshot", "reject_snapshot",
    "revoke_snapshot", "get_policy", "set_policy", "approve_snapshot",
    "export_model", "get_model", "list_models", "load_model", "release_model", "train",
    "RowTrace", "VersionDiff", "trace_row", "version_diff", "trace_model",
    "DETECTORS", "combine", "scan_rows", "trigger_visibility", "audit_poisoned", "audit_sources",
    "list_scans", "scan_version", "LabSettings", "run_arrays", "run_demo",
]
