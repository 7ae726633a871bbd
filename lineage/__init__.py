"""lineage: an append-only provenance and lineage store for machine-learning training data.

Data flows one way: ingest -> versions -> snapshot -> review -> load -> train -> model version;
trace walks it back. Every public function takes the store first::

    from lineage import open_store, ingest_digits, verify_store
    store = open_store("sqlite:///lineage.db", actor="alice")
    ingest_digits(store)
    verify_store(store)

Training code gets arrays only through ``load_snapshot`` (approved, unrevoked, digest verified).

The subpackages follow the flow, each importing only from those before it: ``store`` (the
database, chain, chunks, verify), ``poison`` (triggers, estimators, detectors, metrics; no
database), ``data`` (sources, ingest, versions, transformations, coverage), ``review`` (policy,
snapshots, gates, approval), ``models`` (training, registry), ``trace``, ``lab`` (audits,
experiment, demo). The names below are imported on first use, so ``import lineage`` (and the
command line's start-up) stays cheap.
"""

from importlib import import_module

from lineage.errors import (
    AlreadyExistsError,
    AppendOnlyError,
    BadInputError,
    GateFailedError,
    IntegrityError,
    LineageError,
    NotFoundError,
    QuarantineError,
    RefusedError,
    SchemaOutdatedError,
    SnapshotNotApprovedError,
)

# Public name -> the module that defines it, in flow order.
_HOMES = {
    # The store and its integrity check.
    "Store": "lineage.store.engine", "open_store": "lineage.store.engine",
    "upgrade_store": "lineage.store.engine", "list_events": "lineage.store.log",
    "verify_store": "lineage.store.verify",
    # ingest: sources and raw rows.
    "add_source": "lineage.data.sources", "get_source": "lineage.data.sources",
    "list_sources": "lineage.data.sources", "review_source": "lineage.review.source_reviews",
    "IngestInfo": "lineage.data.ingest", "ingest_arrays": "lineage.data.ingest",
    "ingest_csv": "lineage.data.ingest", "ingest_digits": "lineage.data.ingest",
    "ingest_npz": "lineage.data.ingest", "list_ingests": "lineage.data.ingest",
    "read_rows": "lineage.data.datasets",
    # versions: transformations and what they did.
    "SplitResult": "lineage.data.transforms", "TransformResult": "lineage.data.transforms",
    "append_ingest": "lineage.data.transforms", "dedupe_rows": "lineage.data.transforms",
    "filter_rows": "lineage.data.transforms", "inject_trigger": "lineage.data.transforms",
    "relabel_rows": "lineage.data.transforms", "split_version": "lineage.data.transforms",
    "import_external_edit": "lineage.data.external_edit",
    "export_version": "lineage.data.versions", "list_versions": "lineage.data.versions",
    "show_version": "lineage.data.versions", "version_members": "lineage.data.versions",
    "CoverageReport": "lineage.data.coverage", "get_coverage": "lineage.data.coverage",
    "version_coverage": "lineage.data.coverage",
    # snapshot -> review -> load.
    "create_snapshot": "lineage.review.snapshots", "get_snapshot": "lineage.review.snapshots",
    "list_snapshots": "lineage.review.snapshots", "get_policy": "lineage.review.policy",
    "set_policy": "lineage.review.policy", "approve_snapshot": "lineage.review.gates",
    "reject_snapshot": "lineage.review.gates", "revoke_snapshot": "lineage.review.gates",
    "load_snapshot": "lineage.review.approval",
    # train -> model version.
    "train": "lineage.models.training", "export_model": "lineage.models.registry",
    "get_model": "lineage.models.registry", "list_models": "lineage.models.registry",
    "load_model": "lineage.models.registry", "release_model": "lineage.models.registry",
    # external models: quarantine, isolated evaluation, signed review.
    "import_model": "lineage.models.external", "evaluate_model": "lineage.models.external",
    "review_model": "lineage.models.external",
    "list_external_models": "lineage.models.external",
    # trace walks it back.
    "RowTrace": "lineage.trace", "VersionDiff": "lineage.trace", "trace_row": "lineage.trace",
    "version_diff": "lineage.trace", "trace_model": "lineage.trace",
    # The poisoning lab: detectors, scans and audits.
    "DETECTORS": "lineage.poison.detectors", "combine": "lineage.poison.detectors",
    "scan_rows": "lineage.poison.detectors", "trigger_visibility": "lineage.poison.detectors",
    "audit_poisoned": "lineage.lab.audit", "audit_sources": "lineage.lab.audit",
    "list_scans": "lineage.lab.audit", "scan_version": "lineage.lab.audit",
    "LabSettings": "lineage.lab.experiment", "run_arrays": "lineage.lab.experiment",
    "run_demo": "lineage.lab.demo",
}

__all__ = ["__version__", "AlreadyExistsError", "AppendOnlyError", "BadInputError",
           "GateFailedError", "IntegrityError", "LineageError", "NotFoundError",
           "QuarantineError", "RefusedError", "SchemaOutdatedError", "SnapshotNotApprovedError",
           *_HOMES]


def __getattr__(name: str):
    if name == "__version__":  # read from the installed metadata only when asked (~40 ms)
        from lineage._version import __version__

        return __version__
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'lineage' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # imported once; later look-ups skip this hook
    return value


def __dir__():
    return sorted(__all__)
