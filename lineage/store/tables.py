"""The store's tables: typed SQLAlchemy ORM models. The schema itself is created only by the
Alembic migrations in ``migrations/``; a test checks that the two agree.

Every table is history: rows are inserted once and never updated or deleted (the database's
triggers and the session guard in ``lineage.store`` both refuse it). Every table but ``events``
carries ``record_digest``, the sha256 of the row's canonical content, and each event lists the
digests of the records it wrote, so ``lineage verify`` can find any byte changed behind the
store's back.
"""

from datetime import datetime
from typing import Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Ids are assigned by lineage under the store's write lock (max + 1), not by sequences, so the
# same history gets the same ids on SQLite and PostgreSQL and a rolled-back write leaves no gap.
def _id() -> Mapped[int]:
    return mapped_column(Integer, primary_key=True, autoincrement=False)


class Event(Base):
    """One link of the hash chain: every write appends exactly one, in the same transaction."""

    __tablename__ = "events"
    id: Mapped[int] = _id()
    prev_digest: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON, hashed as stored


class Dataset(Base):
    """A named collection of rows with a fixed schema, set by its first ingest."""

    __tablename__ = "datasets"
    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    n_features: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))  # numpy dtype name of the stored features
    value_min: Mapped[Optional[float]] = mapped_column(Float)
    value_max: Mapped[Optional[float]] = mapped_column(Float)
    image_shape: Mapped[Optional[str]] = mapped_column(String(32))  # "8x8"
    classes: Mapped[str] = mapped_column(Text)  # canonical JSON list of int labels
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class Source(Base):
    """Where rows come from. Its status is derived from its reviews, never stored."""

    __tablename__ = "sources"
    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    uri: Mapped[Optional[str]] = mapped_column(Text)
    license: Mapped[Optional[str]] = mapped_column(String(200))
    owner: Mapped[Optional[str]] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class SourceReview(Base):
    """An approval, rejection or revocation of a source; the newest one sets its status."""

    __tablename__ = "source_reviews"
    id: Mapped[int] = _id()
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    decision: Mapped[str] = mapped_column(String(10))  # approve | reject | revoke
    reason: Mapped[Optional[str]] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class Ingest(Base):
    """One append of raw rows from a source: ids first_row_id .. first_row_id + n_rows - 1."""

    __tablename__ = "ingests"
    id: Mapped[int] = _id()
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    file_name: Mapped[str] = mapped_column(Text)
    file_sha256: Mapped[str] = mapped_column(String(64))
    n_rows: Mapped[int] = mapped_column(Integer)
    first_row_id: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class Chunk(Base):
    """Contiguous rows stored as two blobs: features (n_rows x n_features, the dataset's dtype,
    C order) and labels (int64 little-endian). Row ids first_row_id .. first_row_id + n_rows - 1.
    A chunk comes from an ingest or, for rows whose content a transformation changed, from that
    transformation."""

    __tablename__ = "chunks"
    # Migration 0007: the chunk index (``chunks.chunk_index``) read from this covering index
    # alone. In the table SQLite must walk both blobs' overflow pages to reach the columns after
    # them: at 10M rows that touched the whole 1.5 GB file for every look-up.
    __table_args__ = (Index("ix_chunks_covering", "dataset_id", "first_row_id", "n_rows",
                            "ingest_id", "transformation_id", "record_digest"),)
    id: Mapped[int] = _id()
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    first_row_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    n_rows: Mapped[int] = mapped_column(Integer)
    features: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    labels: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    ingest_id: Mapped[Optional[int]] = mapped_column(ForeignKey("ingests.id"), index=True)
    transformation_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("transformations.id"), index=True
    )
    record_digest: Mapped[str] = mapped_column(String(64))
    # Migration 0010: the function the two blobs are hashed with in the record digest
    # (chain.blob_hash_of): "blake3" since then, NULL (sha256) before. Left out of the record
    # digest when NULL (chain.LATE_COLUMNS), so older chunks keep the digest the chain anchored.
    blob_hash: Mapped[Optional[str]] = mapped_column(String(16))


class Transformation(Base):
    """One recorded change to a dataset: the version(s) it produced point back at it."""

    __tablename__ = "transformations"
    id: Mapped[int] = _id()
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    params: Mapped[str] = mapped_column(Text)  # canonical JSON, seeds included
    reason: Mapped[Optional[str]] = mapped_column(Text)
    code_identity: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class Version(Base):
    """An immutable dataset state, stored as a delta against its parent (a root version, made by
    an ingest, has no parent, and adds exactly its ingest's rows: its ``added_ids`` is empty from
    migration 0009 on, the same range listed before). Id arrays are sorted int64 little-endian
    blobs; labels int64. ``added_labels`` is NULL when added rows keep their own stored labels."""

    __tablename__ = "versions"
    id: Mapped[int] = _id()
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    name: Mapped[Optional[str]] = mapped_column(String(200), unique=True)
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("versions.id"), index=True)
    transformation_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("transformations.id"), index=True
    )
    ingest_id: Mapped[Optional[int]] = mapped_column(ForeignKey("ingests.id"), index=True)
    n_rows: Mapped[int] = mapped_column(Integer)
    content_digest: Mapped[str] = mapped_column(String(64))
    # Delta blobs load only when read (deferred): a look-up never pulls a root's id array.
    removed_ids: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    added_ids: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    added_labels: Mapped[Optional[bytes]] = mapped_column(LargeBinary, deferred=True)
    relabel_ids: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    relabel_labels: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))
    # Migration 0007: NULL (versions written before it) = flat scheme 1; 2 = composed, with
    # ``chunk_leaves`` its Merkle leaves (lineage.data.digests). Left out of the record digest
    # when NULL (chain.LATE_COLUMNS), so older records keep their digests.
    digest_scheme: Mapped[Optional[int]] = mapped_column(Integer)
    chunk_leaves: Mapped[Optional[bytes]] = mapped_column(LargeBinary, deferred=True)


class RowEffect(Base):
    """One row-level change made by a transformation in the version it produced: ``removed``,
    ``added``, ``relabelled`` (``old_label`` -> ``new_label``, same row) or ``modified`` (content
    changed: ``parent_row_id`` -> the new row ``row_id``, with both labels).

    Effects come many per write, so they carry no record digest of their own: the
    transformation's params hold ``effects`` (count and sha256 over all its effects, see
    ``lineage.transforms.effects_digest``), which the chain anchors and ``verify`` recomputes.

    No foreign keys (migration 0008): checking two keys for each of a commit's 10^4..10^6
    effects was most of a PostgreSQL commit, and the effects digest anchors them anyway;
    ``verify`` names any effect whose transformation or version is missing, or whose version
    its transformation did not make."""

    __tablename__ = "row_effects"
    id: Mapped[int] = _id()
    transformation_id: Mapped[int] = mapped_column(Integer, index=True)  # transformations.id
    version_id: Mapped[int] = mapped_column(Integer, index=True)  # versions.id
    row_id: Mapped[int] = mapped_column(BigInteger, index=True)
    effect: Mapped[str] = mapped_column(String(12))
    old_label: Mapped[Optional[int]] = mapped_column(BigInteger)
    new_label: Mapped[Optional[int]] = mapped_column(BigInteger)
    parent_row_id: Mapped[Optional[int]] = mapped_column(BigInteger, index=True)


class Policy(Base):
    """One version of the review policy: thresholds, evaluation snapshot, scan settings. The
    newest record is in force; every review names the version it used."""

    __tablename__ = "policies"
    id: Mapped[int] = _id()
    settings: Mapped[str] = mapped_column(Text)  # canonical JSON
    reason: Mapped[Optional[str]] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class Snapshot(Base):
    """A named, frozen version: its full manifest (member row ids as sorted runs, labels that
    differ from the stored ones, the digests of the chunks holding the rows) and digests."""

    __tablename__ = "snapshots"
    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    n_rows: Mapped[int] = mapped_column(Integer)
    content_digest: Mapped[str] = mapped_column(String(64))  # = the version's, re-derived
    manifest_digest: Mapped[str] = mapped_column(String(64))
    row_runs: Mapped[bytes] = mapped_column(LargeBinary)  # int64 (first id, count) pairs
    override_ids: Mapped[bytes] = mapped_column(LargeBinary)
    override_labels: Mapped[bytes] = mapped_column(LargeBinary)
    chunk_digests: Mapped[str] = mapped_column(Text)  # canonical JSON [[chunk id, digest], ...]
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class SnapshotReview(Base):
    """An approval attempt (passed or failed, with its gate report), a rejection or a
    revocation of a snapshot. Status comes from the passed reviews only."""

    __tablename__ = "snapshot_reviews"
    id: Mapped[int] = _id()
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    decision: Mapped[str] = mapped_column(String(10))  # approve | reject | revoke
    passed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[Optional[str]] = mapped_column(Text)
    policy_id: Mapped[Optional[int]] = mapped_column(ForeignKey("policies.id"))
    content_digest: Mapped[str] = mapped_column(String(64))  # what the review binds to
    report: Mapped[str] = mapped_column(Text)  # canonical JSON gate report
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class ModelVersion(Base):
    """A model trained from an approved snapshot: ``model``:``number``."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model", "number", name="uq_model_versions_model_number"),)
    id: Mapped[int] = _id()
    model: Mapped[str] = mapped_column(String(200), index=True)
    number: Mapped[int] = mapped_column(Integer)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    snapshot_digest: Mapped[str] = mapped_column(String(64))
    estimator: Mapped[str] = mapped_column(String(40))
    params: Mapped[str] = mapped_column(Text)  # canonical JSON, seed included
    code_identity: Mapped[str] = mapped_column(String(200))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[str] = mapped_column(Text)  # canonical JSON
    policy_id: Mapped[Optional[int]] = mapped_column(ForeignKey("policies.id"))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class ArtifactChunk(Base):
    """The serialized model, in pieces of at most 1 MiB, in order of ``seq``."""

    __tablename__ = "artifact_chunks"
    id: Mapped[int] = _id()
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    record_digest: Mapped[str] = mapped_column(String(64))


class ModelReview(Base):
    """A release attempt of a model version (passed or failed), with its gate report."""

    __tablename__ = "model_reviews"
    id: Mapped[int] = _id()
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    decision: Mapped[str] = mapped_column(String(10))  # release
    passed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[Optional[str]] = mapped_column(Text)
    policy_id: Mapped[Optional[int]] = mapped_column(ForeignKey("policies.id"))
    report: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))




class ExternalModel(Base):
    """A model that arrived from outside (a skops or ONNX file), ``model``:``number``: the
    file's digest, format and size, its source, the input it declares (the dataset whose raw
    features it takes) and the types trusted to parse it. Quarantined until a signed review."""

    __tablename__ = "external_models"
    __table_args__ = (UniqueConstraint("model", "number", name="uq_external_models_model_number"),)
    id: Mapped[int] = _id()
    model: Mapped[str] = mapped_column(String(200), index=True)
    number: Mapped[int] = mapped_column(Integer)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    file_name: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(10))  # skops | onnx
    file_sha256: Mapped[str] = mapped_column(String(64))
    file_size: Mapped[int] = mapped_column(BigInteger)
    input_schema: Mapped[str] = mapped_column(Text)  # canonical JSON
    trusted_types: Mapped[str] = mapped_column(Text)  # canonical JSON list (skops)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class ExternalModelChunk(Base):
    """An external model's file, in pieces of at most 1 MiB, in order of ``seq``."""

    __tablename__ = "external_model_chunks"
    id: Mapped[int] = _id()
    external_model_id: Mapped[int] = mapped_column(ForeignKey("external_models.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    record_digest: Mapped[str] = mapped_column(String(64))


class ExternalEvaluation(Base):
    """One isolated evaluation of an external model on the policy's evaluation snapshot: clean
    accuracy, the trigger scan per source -> target class, the reverse-engineered triggers."""

    __tablename__ = "external_evaluations"
    id: Mapped[int] = _id()
    external_model_id: Mapped[int] = mapped_column(ForeignKey("external_models.id"), index=True)
    policy_id: Mapped[Optional[int]] = mapped_column(ForeignKey("policies.id"))
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    snapshot_digest: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[str] = mapped_column(Text)  # canonical JSON
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class ExternalReview(Base):
    """A signed decision on an external model: approve (after a passed evaluation), reject,
    revoke or release, or a refused approval (decision "refused": its report lists the failed
    checks). Its status comes from these records; a refused one changes nothing."""

    __tablename__ = "external_reviews"
    id: Mapped[int] = _id()
    external_model_id: Mapped[int] = mapped_column(ForeignKey("external_models.id"), index=True)
    evaluation_id: Mapped[Optional[int]] = mapped_column(ForeignKey("external_evaluations.id"))
    decision: Mapped[str] = mapped_column(String(10))  # approve|reject|revoke|release|refused
    reason: Mapped[Optional[str]] = mapped_column(Text)
    policy_id: Mapped[Optional[int]] = mapped_column(ForeignKey("policies.id"))
    report: Mapped[str] = mapped_column(Text)  # canonical JSON
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


class Attestation(Base):
    """A signed statement about one record (a review, a model version): a DSSE envelope over
    an in-toto Statement whose subject digest it repeats here for look-ups. It counts only when
    the envelope verifies against the trust file kept outside the database."""

    __tablename__ = "attestations"
    __table_args__ = (UniqueConstraint("record_table", "record_id",
                                       name="uq_attestations_record_table_record_id"),)
    id: Mapped[int] = _id()
    record_table: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(250))
    digest: Mapped[str] = mapped_column(String(64), index=True)
    keyid: Mapped[str] = mapped_column(String(64))
    signer: Mapped[str] = mapped_column(String(200))
    envelope: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    record_digest: Mapped[str] = mapped_column(String(64))


# Tables whose rows are anchored in the chain by record_digest (all history but the chain itself).
RECORD_TABLES = [t for t in Base.metadata.sorted_tables if "record_digest" in t.c]
HISTORY_TABLES = list(Base.metadata.sorted_tables)
