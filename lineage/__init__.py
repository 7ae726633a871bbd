"""lineage: an append-only provenance and lineage store for machine-learning training data.

Data flows one way: ingest -> versions -> snapshot -> review -> load -> train -> model version;
trace walks it back. Every public function takes the store first::

    from lineage import open_store, ingest_digits, verify_store
    store = open_store("sqlite:///lineage.db", actor="alice")
    ingest_digits(store)
    verify_store(store)
"""

from importlib.metadata import PackageNotFoundError, version as _version

from lineage.errors import (AlreadyExistsError, AppendOnlyError, BadInputError, IntegrityError,
                            LineageError, NotFoundError, QuarantineError, RefusedError,
                            SchemaOutdatedError)
from lineage.ingest import (IngestInfo, ingest_arrays, ingest_csv, ingest_digits, ingest_npz,
                            list_ingests)
from lineage.log import list_events
from lineage.sources import add_source, get_source, list_sources, review_source
from lineage.snapshots import load_snapshot
from lineage.errors import GateFailedError, SnapshotNotApprovedError
from lineage.gates import approve_snapshot
from lineage.policy import get_policy, set_policy
from lineage.snapshots import create_snapshot, get_snapshot, list_snapshots, reject_snapshot, revoke_snapshot
from lineage.training import (export_model, get_model, list_models, load_model, release_model,
                              trace_model, train)
from lineage.store import Store, open_store, upgrade_store
from lineage.verify import verify_store
from lineage.coverage import CoverageReport, version_coverage
from lineage.trace import RowTrace, VersionDiff, trace_row, version_diff
from lineage.transforms import (SplitResult, TransformResult, append_ingest, dedupe_rows,
                                filter_rows, get_coverage, import_external_edit, inject_trigger,
                                list_versions, relabel_rows, show_version, split_version)
from lineage.audit import audit_poisoned, audit_sources, list_scans, scan_version
from lineage.detectors import DETECTORS, combine, scan_rows, trigger_visibility
from lineage.lab import LabSettings, run_arrays, run_demo

try:
    __version__ = _version("lineage")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CoverageReport", "RowTrace", "SplitResult", "TransformResult", "VersionDiff", "append_ingest",
    "dedupe_rows", "filter_rows", "get_coverage", "import_external_edit", "inject_trigger",
    "list_versions", "relabel_rows", "show_version", "split_version", "trace_row",
    "version_coverage", "version_diff",
    "AlreadyExistsError", "AppendOnlyError", "BadInputError", "IngestInfo", "IntegrityError",
    "LineageError", "NotFoundError", "QuarantineError", "RefusedError", "SchemaOutdatedError",
    "Store", "add_source", "get_source", "ingest_arrays", "ingest_csv", "ingest_digits",
    "ingest_npz", "list_events", "load_snapshot", "list_ingests", "list_sources", "open_store",
    "review_source", "upgrade_store", "verify_store",
]
__all__ += [  # issue 4: snapshots, gates, policy, training, model versions
    "GateFailedError", "SnapshotNotApprovedError", "approve_snapshot", "create_snapshot",
    "export_model", "get_model", "get_policy", "get_snapshot", "list_models", "list_snapshots",
    "load_model", "reject_snapshot", "release_model", "revoke_snapshot", "set_policy",
    "trace_model", "train",
]
__all__ += [  # issue 5: the poisoning lab, detectors and audits
    "DETECTORS", "LabSettings", "audit_poisoned", "audit_sources", "combine", "list_scans",
    "run_arrays", "run_demo", "scan_rows", "scan_version", "trigger_visibility",
]
