"""External models: a model file from outside (skops or ONNX) enters quarantine, is evaluated in
isolation on the policy's evaluation snapshot only, and leaves quarantine through a signed review.

``import_model`` records the file's sha256, format, size, source and importer; the model starts
``quarantined``. A pickle or joblib file is refused, never unpickled; a skops file's types
are listed with skops' untrusted-type listing and any type skops does not trust by default is
refused unless named (``trust_types``); an ONNX file runs in onnxruntime (the ``onnx`` extra). The
model must take the features exactly as the store holds them (the dataset's raw values, e.g.
digits 0..16): its feature count and classes are checked against the dataset's, and a declared
value range must be the dataset's.

``evaluate_model`` is the only function that runs a quarantined model: on the policy's evaluation
snapshot, it measures clean accuracy, the square trigger scan (pooled, and per source class ->
target class; baseline-corrected by reference models cross-fitted on the evaluation rows) and
the black-box reverse-engineering search (``lineage.poison.reverse``); the evaluation is
recorded, pass or fail. It fails on clean accuracy below the policy's minimum, or on a trigger
the reverse search flags whose ASR on the source class's rows (corrected by the most vulnerable
reference family) exceeds the policy's ``max_asr``. The square scans are reported, not gated:
their references are lineage's own estimators, and external models of other families differ
from them far more than a backdoor-free model of ours does (bench/README.md).
``review_model`` signs an approval only of a passed evaluation made under the policy in force, of
a model whose source is approved, by a reviewer other than the importer; an approval refused by
these gates is recorded (decision ``refused``, signed, with its failed checks).
``release_external`` releases an approved model through the same gates. ``load_external`` (``load_model``) and ``export_external`` (``model export``) refuse a
model that is not approved (quarantined, rejected, revoked, or its source rejected or revoked).

Status: ``quarantined`` until a passed approval, then ``approved`` (``released`` after a release);
``rejected`` / ``revoked`` by a review; ``affected`` when its source was rejected or revoked.
"""

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.data.datasets import check_seed, parse_id
from lineage.data.sources import find_source, source_status
from lineage.errors import (
    AlreadyExistsError,
    BadInputError,
    GateFailedError,
    IntegrityError,
    LineageError,
    NotFoundError,
    QuarantineError,
    RefusedError,
)
from lineage.poison.reverse import (
    DEFAULT_BUDGET,
    confirm_searches,
    kept,
    reverse_engineer,
    search_triggers,
)
from lineage.review.attestations import attest, signing_key_for, verified_attestation
from lineage.review.checkpoints import check_checkpoints, witness
from lineage.review.evaluation import evaluation_rows
from lineage.review.gates import BLOCKED_STATUSES
from lineage.review.keys import Trust, read_trust
from lineage.review.policy import PolicyInfo, policy_authors, policy_in_force
from lineage.review.snapshots import find_snapshot
from lineage.review.source_reviews import verified_source_status
from lineage.store.chain import canonical
from lineage.store.engine import Store
from lineage.store.files import read_file, write_atomically
from lineage.store.log import anchor_records, check_listed_present
from lineage.store.names import check_name, identity
from lineage.store.tables import (
    Dataset,
    ExternalEvaluation,
    ExternalModel,
    ExternalModelChunk,
    ExternalReview,
    ModelVersion,
    Snapshot,
    Source,
)

PIECE = 1 << 20
FORMATS = ("skops", "onnx")
LOADABLE = ("approved", "released")
# Leading bytes of a pickle (protocol 2+) and of the compressed files joblib writes around one.
PICKLE_MAGIC = tuple(b"\x80" + bytes([p]) for p in range(2, 6))
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x04\x22\x4d\x18",
                    b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"ZF")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav", ".pt", ".pth", ".npy")
ONNX_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
# The decision recorded for an approval that failed its gates (the table has no ``passed``
# column; its report and signed statement say ``"decision": "approve", "passed": false``).
REFUSED = "refused"


def parse_ref(ref: str) -> tuple[str, Optional[int]]:
    """``name:number`` -> (name, number); ``name`` -> (name, None). Every model reference, trained
    or external, is parsed here (the registry imports this module, not the other way round)."""
    name, _, number = str(ref).strip().rpartition(":")
    if not name:
        return number, None
    if not number.isdigit():
        raise BadInputError(f"model reference {ref!r}: write NAME:NUMBER, e.g. digits-clf:1")
    return name, parse_id(number, "model version number")


# ----------------------------------------------------------------------------- reading files

class OnnxClassifier:
    """An ONNX classifier run by onnxruntime, seen through scikit-learn's ``predict`` and
    ``predict_proba`` (columns in ``classes_`` order)."""

    def __init__(self, data: bytes, *, classes: Sequence[int], what: str):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # cores are shared
        try:
            self.session = onnxruntime.InferenceSession(data, sess_options=options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # a graph onnxruntime cannot run
            raise BadInputError(f"{what}: onnxruntime cannot run the model "
                                f"({str(exc).splitlines()[0][:200]})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dtype = np.float64 if inp.type == "tensor(double)" else np.float32
        outputs = self.session.get_outputs()
        probs = [o for o in outputs if o.type in ("tensor(float)", "tensor(double)")
                 and len(o.shape or ()) == 2]
        if not probs:
            raise BadInputError(f"{what}: the ONNX model has no (n, n_classes) probability "
                                "output (convert it with options={'zipmap': False})")
        self.proba_name = probs[-1].name
        self.classes_ = np.asarray(classes)
        self.what = what
        width = probs[-1].shape[1]
        if isinstance(width, int) and width != len(self.classes_):
            raise BadInputError(f"{what}: the ONNX model's probability output has {width} "
                                f"columns, the dataset {len(self.classes_)} classes")
        self.n_features_in_ = inp.shape[1] if len(inp.shape or ()) == 2 else None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=self.dtype)
        out = []
        for start in range(0, len(X), 1 << 16):  # bounded memory on big query batches
            out.append(self.session.run([self.proba_name], {self.input_name: X[start:start + (1 << 16)]})[0])
        proba = np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(self.classes_)))
        if proba.ndim != 2 or proba.shape[1] != len(self.classes_) or not np.isfinite(proba).all():
            raise BadInputError(f"{self.what}: the ONNX model answered {proba.shape[-1]} columns "
                                f"for {len(self.classes_)} classes" if proba.ndim == 2 and
                                proba.shape[1] != len(self.classes_) else
                                f"{self.what}: the ONNX model answered probabilities that are "
                                "not finite numbers")
        return proba

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def sniff_format(data: bytes, name: str) -> str:
    """``skops`` or ``onnx`` from a file's first bytes (and, for ONNX, its name); a pickle or
    joblib file, or anything else, is refused unparsed."""
    suffix = Path(name).suffix.lower()
    if data[:2] in PICKLE_MAGIC or suffix in PICKLE_SUFFIXES or \
            any(data.startswith(m) for m in COMPRESSED_MAGIC):
        raise BadInputError(f"{name}: a pickle or joblib file runs code when it is loaded, so "
                            "lineage never unpickles one (refused unparsed): save the model with "
                            "skops.io.dump or convert it to ONNX")
    if data[:4] == b"PK\x03\x04":
        return "skops"
    if suffix == ".onnx":
        return "onnx"
    raise BadInputError(f"{name}: neither a skops file (a zip) nor an ONNX file (*.onnx): "
                        "lineage imports models only as skops or ONNX")


def skops_types(data: bytes, *, what: str) -> list[str]:
    """The types of a skops file that skops does not trust by default (the file is listed, not
    loaded). BadInputError for a file skops cannot list."""
    import skops.io

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if "schema.json" not in z.namelist():
                raise ValueError("no schema.json")
        return sorted(skops.io.get_untrusted_types(data=data))
    except Exception as exc:  # a corrupt zip or schema: refuse, never guess
        raise BadInputError(f"{what}: not a readable skops file ({str(exc).splitlines()[0][:200]})"
                            ) from None


def _onnx_nodes(graph):
    """Every node of an ONNX graph and of the graphs nested in its nodes (If, Loop, Scan)."""
    for g in _onnx_graphs(graph):
        yield from g.node


def _onnx_graphs(graph):
    """An ONNX graph and every graph nested in its nodes' attributes."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _onnx_graphs(sub)


def _onnx_tensors(graph, nodes):
    """Every tensor an ONNX file holds: initializers (dense and sparse) of every graph, nested
    ones too, and the tensors in node attributes (a Constant's value)."""
    for g in _onnx_graphs(graph):
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield from (sparse.values, sparse.indices)
    for node in nodes:
        for attr in node.attribute:
            yield from ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
            for sparse in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + \
                    list(attr.sparse_tensors):
                yield from (sparse.values, sparse.indices)


def onnx_classes(data: bytes, *, what: str) -> Optional[list[int]]:
    """Check an ONNX file before onnxruntime sees it (parsed as protobuf, nothing run): one
    input, standard operator domains only, no external data files (which would make the
    runtime read paths named in the file). Returns the class labels a classifier node names,
    or None."""
    try:
        import onnx
    except ImportError:
        raise BadInputError("ONNX models need the onnx extra: pip install "
                            "'lineage-store[onnx]'") from None
    try:
        model = onnx.load_model_from_string(data)
        graph = model.graph
        if not graph.node:
            raise ValueError("the graph has no nodes")
    except Exception as exc:
        raise BadInputError(f"{what}: not a readable ONNX file ({str(exc).splitlines()[0][:200]})"
                            ) from None
    if model.functions:
        raise BadInputError(f"{what}: the ONNX file defines functions of its own: refused")
    nodes = list(_onnx_nodes(graph))
    if any(t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data)
           for t in _onnx_tensors(graph, nodes)):
        raise BadInputError(f"{what}: the ONNX file refers to external data files: refused "
                            "(embed the weights in the file)")
    domains = sorted(({n.domain for n in nodes} | {o.domain for o in model.opset_import})
                     - set(ONNX_DOMAINS))
    if domains:
        raise BadInputError(f"{what}: the ONNX file uses operators outside the standard "
                            f"domains ({', '.join(domains)}): refused")
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise BadInputError(f"{what}: the ONNX model has {len(inputs)} inputs; lineage feeds "
                            "one (n, n_features) tensor")
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "classlabels_ints" and attr.ints:
                return [int(v) for v in attr.ints]
    return None


def parse_model(data: bytes, fmt: str, *, trusted: Sequence[str], classes: Sequence[int],
                what: str):
    """The model in a file, for predictions: skops loaded with exactly the ``trusted`` types, or
    an ONNX classifier. Nothing is unpickled."""
    if fmt == "skops":
        import skops.io

        unknown = sorted(set(skops_types(data, what=what)) - set(trusted))
        if unknown:
            raise IntegrityError(f"{what}: the stored file holds types nobody trusted at import "
                                 f"({', '.join(unknown)}): refused unparsed")
        try:
            return skops.io.loads(data, trusted=list(trusted))
        except Exception as exc:
            raise BadInputError(f"{what}: skops cannot load the file "
                                f"({str(exc).splitlines()[0][:200]})") from None
    onnx_classes(data, what=what)
    return OnnxClassifier(data, classes=classes, what=what)


def model_classes(model) -> Optional[list[int]]:
    known = getattr(model, "classes_", None)
    try:
        return None if known is None else [int(c) for c in known]
    except (TypeError, ValueError):
        return None


# ----------------------------------------------------------------------------- records

@dataclass(frozen=True)
class ExternalModelInfo:
    """One external model (``ref`` is ``name:number``) with its status, evaluations and
    reviews (``detail``)."""

    id: int
    ref: str
    model: str
    number: int
    status: str  # quarantined | approved | released | rejected | revoked | affected
    source: str
    source_status: str
    dataset: str
    format: str
    file_name: str
    file_sha256: str
    file_size: int
    input_schema: dict
    trusted_types: tuple
    actor: str
    created_at: datetime
    status_reason: Optional[str] = None
    evaluation: Optional[dict] = None  # the newest evaluation's report
    evaluations: tuple = field(default=())
    reviews: tuple = field(default=())
    external: bool = True


def find_external(session: Session, ref: str) -> Optional[ExternalModel]:
    """The external model ``ref`` names (``name:number``, or ``name`` for its newest version);
    None when the name is not an external model's."""
    name, number = parse_ref(ref)
    query = select(ExternalModel).where(ExternalModel.model == name)
    query = (query.where(ExternalModel.number == number) if number is not None
             else query.order_by(ExternalModel.number.desc()).limit(1))
    found = session.scalars(query).first()
    if found is None:
        if session.scalars(select(ExternalModel.id).where(ExternalModel.model == name)).first():
            raise NotFoundError(f"no model version {ref!r} (see `lineage model list`)")
        return None
    if session.scalars(select(ModelVersion.id).where(ModelVersion.model == name)).first():
        raise BadInputError(f"model name {name!r} names both a trained and an external model: "
                            "rename one (import again under another name)")
    return found


def get_external(session: Session, ref: str) -> ExternalModel:
    found = find_external(session, ref)
    if found is None:
        raise NotFoundError(f"no external model {ref!r} (see `lineage model list`)")
    return found


def external_reviews(session: Session, em: ExternalModel) -> list[ExternalReview]:
    return list(session.scalars(select(ExternalReview).where(
        ExternalReview.external_model_id == em.id).order_by(ExternalReview.id)))


def external_evaluations(session: Session, em: ExternalModel) -> list[ExternalEvaluation]:
    return list(session.scalars(select(ExternalEvaluation).where(
        ExternalEvaluation.external_model_id == em.id).order_by(ExternalEvaluation.id)))


def reviewed_status(reviews: list) -> tuple[str, Optional[str]]:
    """The status the model's own reviews give it (its source aside); a ``refused`` review (an
    approval that failed its gates) leaves it where it was."""
    status, reason = "quarantined", None
    for r in reviews:
        if r.decision in ("approve", "reject", "revoke"):
            status = {"approve": "approved", "reject": "rejected", "revoke": "revoked"}[r.decision]
            reason = (f"{r.decision} by {r.actor} at {r.created_at:%Y-%m-%d %H:%M:%S}"
                      + (f": {r.reason}" if r.reason else ""))
        elif r.decision == "release" and status == "approved":
            status = "released"
    return status, reason


def status_and_reason(session: Session, em: ExternalModel, reviews: Optional[list] = None,
                      trust: Optional[Trust] = None) -> tuple[str, Optional[str]]:
    """The model's status and why; given the ``trust`` file (gates, loads), its source's status
    counts only genuine source reviews (``verified_source_status``)."""
    reviews = external_reviews(session, em) if reviews is None else reviews
    status, reason = reviewed_status(reviews)
    if status in ("quarantined", "approved", "released"):
        source = em_source(session, em)
        state = (source_status(session, source) if trust is None else
                 verified_source_status(session, source, trust)[0])
        if state in ("rejected", "revoked"):
            return "affected", f"source {source.name!r} is {state}"
    return status, reason


def em_source(session: Session, em: ExternalModel) -> Source:
    return session.get(Source, em.source_id)


def external_info(session: Session, em: ExternalModel, *, detail: bool = False) -> ExternalModelInfo:
    reviews = external_reviews(session, em)
    evaluations = external_evaluations(session, em)
    status, reason = status_and_reason(session, em, reviews)
    source = em_source(session, em)
    dataset = session.get(Dataset, em.dataset_id)
    newest = json.loads(evaluations[-1].report) if evaluations else None
    return ExternalModelInfo(
        id=em.id, ref=f"{em.model}:{em.number}", model=em.model, number=em.number, status=status,
        source=source.name, source_status=source_status(session, source), dataset=dataset.name,
        format=em.format, file_name=em.file_name, file_sha256=em.file_sha256,
        file_size=em.file_size, input_schema=json.loads(em.input_schema),
        trusted_types=tuple(json.loads(em.trusted_types)), actor=em.actor,
        created_at=em.created_at, status_reason=reason, evaluation=newest,
        evaluations=tuple({"id": e.id, "passed": e.passed, "actor": e.actor,
                           "created_at": e.created_at, "policy_version": e.policy_id or 0,
                           "snapshot_digest": e.snapshot_digest,
                           **({"report": json.loads(e.report)} if detail else {})}
                          for e in evaluations),
        reviews=tuple({"id": r.id, "decision": r.decision, "passed": r.decision != REFUSED,
                       "reason": r.reason,
                       "evaluation": r.evaluation_id, "policy_version": r.policy_id or 0,
                       "actor": r.actor, "created_at": r.created_at}
                      for r in reviews))


def list_external_models(store: Store) -> list[ExternalModelInfo]:
    """Every external model, oldest first."""
    with store.read() as session:
        return [external_info(session, em) for em in
                session.scalars(select(ExternalModel).order_by(ExternalModel.id))]


def get_external_model(store: Store, ref: str) -> ExternalModelInfo:
    """One external model with its evaluations and reviews."""
    with store.read() as session:
        return external_info(session, get_external(session, ref), detail=True)


def external_file(session: Session, em: ExternalModel) -> bytes:
    pieces = session.scalars(select(ExternalModelChunk).where(
        ExternalModelChunk.external_model_id == em.id).order_by(ExternalModelChunk.seq))
    data = b"".join(bytes(p.data) for p in pieces)
    if hashlib.sha256(data).hexdigest() != em.file_sha256 or len(data) != em.file_size:
        raise IntegrityError(f"external model {em.model}:{em.number}: the stored file does not "
                             "match its recorded sha256: run `lineage verify`")
    return data


# ----------------------------------------------------------------------------- import

def _schema(dataset: Dataset) -> dict:
    return {"dataset": dataset.name, "n_features": dataset.n_features,
            "value_min": dataset.value_min, "value_max": dataset.value_max,
            "classes": json.loads(dataset.classes), "image_shape": dataset.image_shape}


def check_input(model, schema: dict, *, what: str, declared_classes=None) -> None:
    """The model's feature count and classes are the dataset's (BadInputError otherwise)."""
    n = getattr(model, "n_features_in_", None)
    if isinstance(n, (int, np.integer)) and int(n) != schema["n_features"]:
        raise BadInputError(f"{what} takes {int(n)} features, dataset {schema['dataset']!r} "
                            f"holds {schema['n_features']}: wrong input schema")
    classes = declared_classes if declared_classes is not None else model_classes(model)
    if classes is not None and sorted(classes) != sorted(schema["classes"]):
        raise BadInputError(f"{what} predicts classes {sorted(classes)}, dataset "
                            f"{schema['dataset']!r} has {sorted(schema['classes'])}: wrong "
                            "input schema")


def _search_floor(schema: dict, evaluation) -> float:
    """The lowest value the trigger search may write: the dataset's declared minimum, else the
    evaluation rows' smallest value or 0, whichever is lower (rows of no declared range)."""
    if schema["value_min"] is not None:
        return float(schema["value_min"])
    return min(0.0, float(evaluation.X.min())) if len(evaluation.X) else 0.0


def parse_value_range(text: Optional[str]) -> Optional[tuple[float, float]]:
    if text is None:
        return None
    try:
        low, high = (float(v) for v in str(text).split(":"))
    except ValueError:
        raise BadInputError(f"--value-range {text!r}: write LOW:HIGH, e.g. 0:16") from None
    return low, high


def import_model(store: Store, path: str | Path, *, name: str, source: str,
                 dataset: Optional[str] = None, trust_types: Sequence[str] = (),
                 value_range: Optional[tuple[float, float]] = None) -> ExternalModelInfo:
    """Import a model file from ``source`` as external model ``name:N``, quarantined.

    The model is fed the features of ``dataset`` (default: the policy's evaluation snapshot's)
    exactly as the store holds them; its feature count and classes must be the dataset's, and
    ``value_range`` (the input it declares, e.g. (0, 16)) must be the dataset's value range.
    Raises BadInputError (a pickle, a corrupt file, a skops type nobody trusted: nothing is
    written), NotFoundError (no such source or dataset), QuarantineError (a rejected or revoked
    source). Example: ``import_model(store, "vendor.skops", name="vendor-clf", source="vendor")``
    """
    name = (name or "").strip()
    if not name or ":" in name:
        raise BadInputError("an external model needs a name without ':' (versions are numbered)")
    name = check_name(name, "model name")
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    data = read_file(path, "model file")
    what = f"{path.name}"
    fmt = sniff_format(data, path.name)
    trust_types = sorted(set(trust_types))
    declared = None
    if fmt == "skops":
        untrusted = skops_types(data, what=what)
        unknown = [t for t in untrusted if t not in trust_types]
        if unknown:
            raise BadInputError(f"{what}: holds types skops does not trust by default: "
                                f"{', '.join(unknown)}; refused unparsed (check each, then name "
                                "it with --trust-type)")
        trusted = [t for t in untrusted]
    else:
        declared = onnx_classes(data, what=what)
        trusted = []
    with store.read() as session:
        src = find_source(session, source)
        state = source_status(session, src)
        if state in ("rejected", "revoked"):
            raise QuarantineError(f"source {source!r} is {state}: it delivers no more models")
        if dataset is None:
            policy = policy_in_force(session, read_trust(store.trust))
            if not policy.evaluation_snapshot:
                raise BadInputError("give --dataset (the dataset whose raw features the model "
                                    "takes): the policy names no evaluation snapshot to take it "
                                    "from")
            snap = find_snapshot(session, policy.evaluation_snapshot)
            ds = session.get(Dataset, snap.dataset_id)
        else:
            ds = session.scalars(select(Dataset).where(Dataset.name == dataset)).first()
            if ds is None:
                raise NotFoundError(f"no dataset named {dataset!r}")
        if session.scalars(select(ModelVersion.id).where(ModelVersion.model == name)).first():
            raise AlreadyExistsError(f"model name {name!r} is a trained model's: import under "
                                     "another name")
        schema = _schema(ds)
    if value_range is not None and (float(value_range[0]), float(value_range[1])) != (
            schema["value_min"], schema["value_max"]):
        held = ("values of no declared range" if schema["value_max"] is None else
                f"{schema['value_min']:g}..{schema['value_max']:g}")
        raise BadInputError(
            f"{what} declares input values {value_range[0]:g}..{value_range[1]:g}; dataset "
            f"{schema['dataset']!r} holds {held} and the model is fed them as stored: wrong "
            "input schema (wrap the model with its scaling)")
    model = parse_model(data, fmt, trusted=trusted, classes=declared or schema["classes"],
                        what=what)
    if not (hasattr(model, "predict") and hasattr(model, "predict_proba")):
        raise BadInputError(f"{what}: not a classifier with predict and predict_proba")
    check_input(model, schema, what=what, declared_classes=declared)
    schema = {**schema, "declared": "value range given" if value_range is not None else
              "the dataset's values as stored", "model_classes": declared or model_classes(model)}
    sha = hashlib.sha256(data).hexdigest()
    with store.write() as tx:
        session = tx.session
        src = find_source(session, source)
        if source_status(session, src) in ("rejected", "revoked"):
            raise QuarantineError(f"source {source!r} was rejected while the file was read")
        number = max([0, *session.scalars(select(ExternalModel.number).where(
            ExternalModel.model == name))]) + 1
        em = tx.add(ExternalModel(model=name, number=number, source_id=src.id,
                                  dataset_id=session.scalars(select(Dataset.id).where(
                                      Dataset.name == schema["dataset"])).one(),
                                  file_name=path.name, format=fmt, file_sha256=sha,
                                  file_size=len(data), input_schema=canonical(schema),
                                  trusted_types=canonical(trusted)))
        tx.add_rows(ExternalModelChunk, [{"external_model_id": em.id, "seq": i // PIECE,
                                          "data": data[i:i + PIECE]}
                                         for i in range(0, len(data), PIECE)])
        tx.event("model.import", f"external model {name}:{number} imported from source "
                 f"{source} ({fmt}, {len(data)} bytes, sha256 {sha[:16]}): quarantined",
                 model=f"{name}:{number}", source=source, format=fmt, file_sha256=sha)
        return external_info(session, em)


# ----------------------------------------------------------------------------- evaluation

# The reference models an external model is compared with: it may be any family and any
# regularization, so the null is the most vulnerable of several (lineage's logistic model as
# trained, one regularized 100x less, and the MLP).
REFERENCE_ESTIMATORS = (("logistic", None), ("logistic", {"C": 100.0}), ("mlp", None))
_REFERENCES: dict = {}  # (evaluation digest, settings) -> reference searches, this process
_FITTED: dict = {}  # (estimator, params, seed, digest of the rows) -> a fitted reference model
_BASELINES: dict = {}  # (evaluation digest, settings) -> the square scans' reference rates
_CONFIRMED: dict = {}  # (evaluation digest, settings, pair) -> the references' confirmations


def fit_reference(estimator: str, params: Optional[dict], X: np.ndarray, y: np.ndarray, *,
                  seed: int, value_max: float):
    """A reference model of ``estimator`` fitted on trusted rows (X, y), kept for the process:
    the square scans, the pattern scan and the reverse search of every model evaluated on the
    same evaluation snapshot cross-fit the same folds, so each is fitted once."""
    from lineage.poison.estimators import fit_estimator

    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y)
    key = (estimator, canonical(params or {}), seed, float(value_max),
           hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest())
    return kept(_FITTED, key, lambda: fit_estimator(estimator, X, y, seed=seed,
                                                    value_max=value_max, params=params), 64)


def reference_models(X: np.ndarray, y: np.ndarray, *, snapshot_digest: str, budget: int,
                     seed: int, classes: Sequence[int], image_shape: str,
                     value_range: tuple) -> tuple[list, list]:
    """The reference models of the reverse-engineering search, cross-fitted on the evaluation
    rows: for each of ``REFERENCE_ESTIMATORS``, each fold's model (trained on the other fold)
    with the rows it never saw, as (predict_proba, X, y); and their screening searches. Both
    depend only on the evaluation snapshot's content (its digest) and the settings, so they are
    made once per process for every model evaluated on the same snapshot."""
    from sklearn.model_selection import StratifiedKFold

    def make():
        refs = []
        splitter = StratifiedKFold(2, shuffle=True, random_state=seed)
        for estimator, params in REFERENCE_ESTIMATORS:
            for train_idx, test_idx in splitter.split(X, y):
                model = fit_reference(estimator, params, X[train_idx], y[train_idx], seed=seed,
                                      value_max=value_range[1])
                refs.append((lambda Z, m=model: _aligned(m, Z, classes), X[test_idx],
                             y[test_idx]))
        screened = [search_triggers(f, Xr, yr, classes=classes, image_shape=image_shape,
                                    value_range=value_range, budget=int(budget) * 3 // 4,
                                    random_state=seed) for f, Xr, yr in refs]
        return refs, screened

    key = (snapshot_digest, budget, seed, tuple(classes), image_shape, tuple(value_range))
    return kept(_REFERENCES, key, make)


def _aligned(model, X: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """predict_proba with one column per class of ``classes`` (a class the model never saw: 0)."""
    proba = np.asarray(model.predict_proba(np.asarray(X, dtype=np.float64)))
    known = [int(c) for c in model.classes_]
    if known == list(classes):
        return proba
    out = np.zeros((len(proba), len(classes)))
    for j, c in enumerate(known):
        if c in classes:
            out[:, list(classes).index(c)] = proba[:, j]
    return out


@dataclass(frozen=True)
class EvaluationResult:
    """A recorded evaluation: its id and report (``passed``, the figures, the triggers)."""

    id: int
    model: str
    passed: bool
    report: dict


def measure_model(model, X: np.ndarray, y: np.ndarray, *, classes: Sequence[int], image_shape: str,
                  value_range: tuple[float, float], policy: PolicyInfo, budget: int,
                  seed: int, snapshot_digest: str) -> dict:
    """Clean accuracy, the square trigger scan per source -> target class and the reverse-
    engineered triggers of ``model`` on evaluation rows X, y, against ``policy``'s thresholds:
    the report (``passed``, ``problems`` and the figures)."""
    from threadpoolctl import threadpool_limits

    from lineage.poison.trigger_scan import (
        baseline_rates,
        class_baseline_rates,
        scan_attacks,
        scan_triggers,
    )
    from lineage.poison.triggers import candidate_triggers

    X = np.asarray(X, dtype=np.float64)
    classes = [int(c) for c in classes]
    with threadpool_limits(limits=1):
        accuracy = float((model.predict(X) == y).mean()) if len(y) else 0.0

        def baseline_of(candidates):
            # Per candidate and source -> target: the largest rate of any reference family.
            rates = [class_baseline_rates(
                lambda Xr, yr, e=e, p=p: fit_reference(e, p, Xr, yr, seed=seed,
                                                       value_max=value_range[1]),
                X, y, candidates, image_shape=image_shape, classes=classes, random_state=seed)
                for e, p in REFERENCE_ESTIMATORS]
            return np.max(rates, axis=0)

        def fit_of(e, p):
            return lambda Xr, yr: fit_reference(e, p, Xr, yr, seed=seed,
                                                value_max=value_range[1])

        sizes = tuple(policy.scan_sizes)
        key = (snapshot_digest, seed, sizes, tuple(classes), image_shape, tuple(value_range))
        # The references' rates depend on the evaluation rows and the settings only: computed
        # once per process for every model evaluated on the same snapshot.
        pooled_base = kept(_BASELINES, ("pooled", *key), lambda: np.max(
            [baseline_rates(fit_of(e, p), X, y, image_shape=image_shape, value=value_range[1],
                            sizes=sizes, classes=classes, random_state=seed)
             for e, p in REFERENCE_ESTIMATORS], axis=0))
        pooled = scan_triggers(model, X, y, image_shape=image_shape, value=value_range[1],
                               sizes=sizes, target_classes=classes, baseline=pooled_base)
        worst = pooled.worst
        squares = candidate_triggers(image_shape, value=value_range[1], sizes=sizes)
        attacks = scan_attacks(model, X, y, squares, image_shape=image_shape, classes=classes,
                               baseline=kept(_BASELINES, ("class", *key),
                                             lambda: baseline_of(squares)))
        refs, screened = reference_models(X, np.asarray(y), snapshot_digest=snapshot_digest,
                                          budget=budget, seed=seed, classes=classes,
                                          image_shape=image_shape,
                                          value_range=tuple(value_range))
        ref_key = (snapshot_digest, budget, seed, tuple(classes), image_shape,
                   tuple(value_range))

        def confirm_references(pairs, rest):
            return confirm_searches(_CONFIRMED, refs, ref_key, pairs, rest, classes=classes,
                                    image_shape=image_shape, value_range=tuple(value_range),
                                    random_state=seed, limit=256)

        reverse = reverse_engineer(lambda Z: _aligned(model, Z, classes), X, y, classes=classes,
                                   image_shape=image_shape, value_range=value_range,
                                   references=refs, budget=budget, random_state=seed,
                                   screened=screened, confirm_references=confirm_references)
        found = reverse.smallest
        measured = None
        if found is not None:
            pattern = found.pattern(image_shape)
            rows = [a for a in scan_attacks(model, X, y, [pattern], image_shape=image_shape,
                                            classes=classes, baseline=baseline_of([pattern]))
                    if a.source == found.source]
            measured = rows[0].as_dict() if rows else None
    problems = []
    if accuracy < policy.min_clean_accuracy:
        problems.append(f"clean accuracy {accuracy:.4f} < {policy.min_clean_accuracy:g}")
    # The square scan is reported, not gated: its baseline comes from lineage's own estimators,
    # and an external model of another family or regularization differs from them far more
    # than a backdoor-free model of ours does (bench/README.md: it would refuse 15 of 20 clean
    # vendor models). The reverse search compares like with like (lineage.poison.reverse).
    if reverse.flagged and measured is not None and measured["asr"] > policy.max_asr:
        i = reverse.searches.index(found)
        problems.append(
            f"reverse engineering found a {len(found.pixels)}-pixel trigger that flips class "
            f"{found.source} to {found.target}: ASR {measured['asr']:.4f} > {policy.max_asr:g} "
            f"(raw {measured['raw_asr']:.4f}, baseline {measured['baseline_asr']:.4f}), found "
            f"with {reverse.ratios[i]:.2f} of the reference models' effort (<= "
            f"{reverse.max_ratio:g}, anomaly index {reverse.anomaly[i]:.1f} > "
            f"{reverse.min_anomaly:g})")
    rev = reverse.as_dict()
    if rev["smallest"] is not None:
        rev["smallest"]["measured"] = measured
    return {"passed": not problems, "problems": problems,
            "clean_accuracy": round(accuracy, 6), "min_clean_accuracy": policy.min_clean_accuracy,
            "worst_asr": round(worst.asr, 6) if worst else 0.0, "max_asr": policy.max_asr,
            "worst_trigger": worst.describe if worst else None,
            "triggers": pooled.top(10),
            "worst_source_asr": attacks[0].as_dict() if attacks else None,
            "source_triggers": [a.as_dict() for a in attacks[:10]],
            "reverse": rev, "evaluation_rows": int(len(y)),
            "message": "; ".join(problems) if problems else
            f"clean accuracy {accuracy:.4f} >= {policy.min_clean_accuracy:g}; no "
            "reverse-engineered trigger stands out against the reference models (worst square "
            f"trigger, reported only: {worst.describe if worst else '-'} ASR "
            f"{worst.asr if worst else 0.0:.4f})"}


def _measure(store: Store, ref: str, *, budget: int, seed: Optional[int],
             trust: Optional[Trust] = None) -> tuple[dict, int, int, PolicyInfo]:
    """What ``evaluate_model`` records, measured (nothing written): (report, the model's id,
    the evaluation snapshot's id, the policy in force)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1000:
        raise BadInputError(f"--budget {budget!r}: give a whole number of at least 1000 queries")
    with store.read() as session:
        em = get_external(session, ref)
        ref = f"{em.model}:{em.number}"
        status, why = status_and_reason(session, em, trust=trust)
        if status not in ("quarantined", "approved", "released"):
            raise RefusedError(f"external model {ref} is {status} ({why}): not evaluated")
        policy = policy_in_force(session, trust)
        dataset = session.get(Dataset, em.dataset_id)
        evaluation = evaluation_rows(session, policy, dataset, f"external model {ref}")
        snap = find_snapshot(session, evaluation.name)
        snap_id, snap_digest = snap.id, snap.content_digest
        data = external_file(session, em)
        fmt, trusted = em.format, json.loads(em.trusted_types)
        schema = json.loads(em.input_schema)
        em_id, sha = em.id, em.file_sha256
    seed = check_seed(policy.seed if seed is None else seed)
    model = parse_model(data, fmt, trusted=trusted,
                        classes=schema.get("model_classes") or schema["classes"],
                        what=f"external model {ref}")
    check_input(model, schema, what=f"external model {ref}",
                declared_classes=schema.get("model_classes"))
    classes = sorted(schema["classes"])
    report = measure_model(model, evaluation.X, evaluation.y, classes=classes,
                           image_shape=evaluation.image_shape,
                           value_range=(_search_floor(schema, evaluation), evaluation.value_max),
                           policy=policy, budget=int(budget), seed=seed,
                           snapshot_digest=snap_digest)
    report = {"model": ref, "evaluation_snapshot": evaluation.name,
              "snapshot_digest": snap_digest, "policy_version": policy.version,
              "policy": policy.settings(), "file_sha256": sha, "seed": seed,
              **report}
    return report, em_id, snap_id, policy


def evaluate_model(store: Store, ref: str, *, budget: int = DEFAULT_BUDGET,
                   seed: Optional[int] = None) -> EvaluationResult:
    """Evaluate a quarantined (or approved) external model in isolation: on the policy's
    evaluation snapshot only, its input schema checked against the snapshot's, then clean
    accuracy, the trigger scan per source -> target class and the reverse-engineered triggers
    (``budget`` rows predicted per searched model, ``seed`` default the policy's). The
    evaluation is recorded, pass or fail; a schema mismatch writes nothing (BadInputError).
    Example: ``evaluate_model(store, "vendor-clf:1")``
    """
    report, em_id, snap_id, policy = _measure(store, ref, budget=budget, seed=seed,
                                              trust=read_trust(store.trust))
    ref, evaluation_name, snap_digest = report["model"], report["evaluation_snapshot"], \
        report["snapshot_digest"]
    with store.write() as tx:
        record = tx.add(ExternalEvaluation(external_model_id=em_id,
                                           policy_id=policy.version or None, snapshot_id=snap_id,
                                           snapshot_digest=snap_digest, passed=report["passed"],
                                           report=canonical(report)))
        tx.event("model.evaluate", f"external model {ref} evaluated on {evaluation_name}: "
                 + ("passed" if report["passed"] else "failed: " + report["message"]),
                 model=ref, evaluation=record.id, passed=report["passed"],
                 policy_version=policy.version)
    return EvaluationResult(id=record.id, model=ref, passed=report["passed"], report=report)


# ----------------------------------------------------------------------------- review

def _remeasure(store: Store, ref: str, trust: Trust) -> Optional[tuple[int, Optional[dict]]]:
    """The model's newest evaluation measured again in this (the reviewer's) process with the
    budget and seed it records: (its id, the fresh report, None when the record is not one
    lineage wrote), or None when the model was never evaluated. An evaluation record is
    neither signed nor made by someone outside review (the importer evaluates), so a review
    counts what it measures itself, as ``approve_snapshot`` runs its gates itself."""
    with store.read() as session:
        em = get_external(session, ref)
        evaluations = external_evaluations(session, em)
        if not evaluations:
            return None
        newest_id, stored = evaluations[-1].id, evaluations[-1].report
        try:
            stored = json.loads(stored)
            budget, seed = int(stored["reverse"]["budget"]), int(stored["seed"])
        except (ValueError, KeyError, TypeError):
            return newest_id, None
    try:
        fresh, _, _, _ = _measure(store, ref, budget=budget, seed=seed, trust=trust)
    except LineageError as exc:  # the review's own checks say why first, where they can
        return newest_id, {"passed": False, "message": f"cannot measure it: {exc}"}
    return newest_id, fresh


def _decided_on(report: dict) -> tuple:
    """What an evaluation's verdict rests on, compared between its record and a re-run."""
    return (report.get("passed"), report.get("problems"), report.get("clean_accuracy"),
            report.get("worst_asr"), report.get("snapshot_digest"), report.get("file_sha256"))


def review_gates(session: Session, em: ExternalModel, reviewer: str, key, trust: Trust,
                 remeasured: Optional[tuple] = None) -> tuple:
    """(checks, the evaluation they read, the policy): the newest evaluation passed and was
    made under the policy in force on its evaluation snapshot as it is now, and measuring it
    again here (``remeasured``, from ``_remeasure``) gives the same verdict; the model's source
    is not quarantined, rejected or revoked (``BLOCKED_STATUSES``, as for a snapshot's rows);
    four eyes (the reviewer is not the importer, by name or key; the importer set no policy
    setting in force and did not create the evaluation snapshot)."""
    ref = f"{em.model}:{em.number}"
    policy = policy_in_force(session, trust)
    evaluations = external_evaluations(session, em)
    checks = []
    newest = evaluations[-1] if evaluations else None
    if newest is None:
        checks.append({"check": "evaluation", "passed": False,
                       "message": f"model {ref} was never evaluated: run `lineage model "
                       f"evaluate {ref}`"})
    else:
        report = json.loads(newest.report)
        current = None
        if policy.evaluation_snapshot:
            snap = session.scalars(select(Snapshot).where(
                Snapshot.name == policy.evaluation_snapshot)).first()
            current = snap.content_digest if snap is not None else None
        fresh = (newest.policy_id or 0) == policy.version and newest.snapshot_digest == current
        rerun = remeasured[1] if remeasured is not None and remeasured[0] == newest.id else None
        same = (rerun is not None and _decided_on(rerun) == _decided_on(report)
                and bool(newest.passed) == rerun.get("passed"))
        checks.append({"check": "evaluation", "passed": bool(newest.passed) and fresh and same,
                       "evaluation": newest.id,
                       "message": (f"evaluation {newest.id} was made under policy version "
                                   f"{newest.policy_id or 0}, the policy in force is version "
                                   f"{policy.version}: evaluate again" if not fresh else
                                   f"evaluation {newest.id} is not what measuring the model "
                                   "again gives (" + (f"re-run: {rerun.get('message')}" if rerun
                                                      else "its record is not one lineage "
                                                      "wrote") + "): not counted; run `lineage "
                                   "verify`" if not same else
                                   f"evaluation {newest.id} passed under policy version "
                                   f"{policy.version}, measured again by the reviewer"
                                   if newest.passed else
                                   f"evaluation {newest.id} failed: {report.get('message')}")})
    source = em_source(session, em)
    state, _ = verified_source_status(session, source, trust)
    # The sources gate of snapshots: a model is only as trusted as the source it came from.
    # Importing from a source under review is allowed (quarantine is for that); approving is not.
    blocked = state in BLOCKED_STATUSES
    checks.append({"check": "source", "passed": not blocked, "source": source.name,
                   "status": state,
                   "message": f"source {source.name!r} is "
                   + (state + (" (never reviewed)" if state == "quarantined" else "")
                      + f": approve the source first (`lineage source review {source.name} "
                      "--approve`)" if blocked else state)})
    problems = []
    if identity(reviewer) == identity(em.actor):
        problems.append(f"reviewer {reviewer!r} imported the model")
    elif key.keyid in trust.keyids_of([em.actor]):
        problems.append(f"the reviewer's key {key.keyid[:16]} is also trusted as {em.actor!r}, "
                        "who imported the model")
    chosen = sorted(k for k, a in policy_authors(session, policy, trust).items()
                    if identity(a) == identity(em.actor))
    if chosen:
        problems.append(f"{em.actor!r}, who imported the model, chose settings of policy "
                        f"version {policy.version} in force ({', '.join(chosen)})")
    if policy.evaluation_snapshot:
        snap = session.scalars(select(Snapshot).where(
            Snapshot.name == policy.evaluation_snapshot)).first()
        if snap is not None and identity(snap.actor) == identity(em.actor):
            problems.append(f"{em.actor!r}, who imported the model, created the evaluation "
                            f"snapshot {snap.name!r}")
    checks.append({"check": "four_eyes", "passed": not problems, "reviewer": reviewer,
                   "reviewer_keyid": key.keyid, "importer": em.actor,
                   "message": "; ".join(problems) if problems else
                   f"reviewer {reviewer!r} did not import the model nor set up its evaluation"})
    return checks, newest, policy


def review_model(store: Store, ref: str, *, decision: str = "approve",
                 reason: Optional[str] = None) -> ExternalModelInfo:
    """A signed review of an external model by the store's actor: ``approve`` (only a model in
    quarantine whose newest evaluation passed under the policy in force, whose source is
    approved, by someone other than its importer), ``reject`` (a model in quarantine) or
    ``revoke`` (an approved one); reject and revoke need a reason.

    An approval that fails its gates (``review_gates``) is recorded, as a failed release of our
    own models is: a signed review with decision ``refused`` and the failed checks, event
    ``model.review-failed``; then GateFailedError (exit 4) lists each failed check. Bad input
    (BadInputError, NotFoundError) and a model in the wrong state (RefusedError) write nothing.
    Example: ``review_model(open_store(actor="reviewer"), "vendor-clf:1", decision="approve")``
    """
    if decision not in ("approve", "reject", "revoke"):
        raise BadInputError("a model review decision is one of: approve, reject, revoke")
    if decision != "approve" and not (reason or "").strip():
        raise BadInputError(f"--reason is required to {decision} a model")
    key, trust = signing_key_for(store)
    # Measured before the write: the write holds the store's lock for milliseconds, not seconds.
    remeasured = _remeasure(store, ref, trust) if decision == "approve" else None
    with store.write() as tx:
        session = tx.session
        em = get_external(session, ref)
        ref = f"{em.model}:{em.number}"
        status, _ = status_and_reason(session, em, trust=trust)
        if decision == "approve" and status == "affected" and \
                reviewed_status(external_reviews(session, em))[0] == "quarantined":
            status = "quarantined"  # its rejected or revoked source fails the source check
        allowed = {"approve": ("quarantined",), "reject": ("quarantined",),
                   "revoke": ("approved", "released", "affected")}[decision]
        if status not in allowed:
            hint = {"approve": "only a model in quarantine can be approved",
                    "reject": "only a model in quarantine can be rejected (revoke an approved one)",
                    "revoke": "only an approved model can be revoked"}[decision]
            raise RefusedError(f"external model {ref} is {status}: {hint}")
        evaluation_id, checks, failed, policy = None, [], [], policy_in_force(session, trust)
        if decision == "approve":
            checks, newest, policy = review_gates(session, em, store.actor, key, trust,
                                                  remeasured)
            failed = [c for c in checks if not c["passed"]]
            evaluation_id = newest.id if newest is not None else None
        review = _record_review(tx, key, em, ref, decision=decision, checks=checks,
                                evaluation_id=evaluation_id, policy=policy, reason=reason,
                                event="model.review", summary=f": {decision}",
                                refused=": not approved: ",
                                extra={"decision": decision, "evaluation": evaluation_id})
        info = external_info(session, em, detail=True)
    witness(store)
    if failed:
        raise _not_passed(ref, "approved", review, checks, failed, policy)
    return info


def _record_review(tx, key, em: ExternalModel, ref: str, *, decision: str, checks: list,
                   evaluation_id: Optional[int], policy, reason: Optional[str], event: str,
                   summary: str, refused: str, extra: Optional[dict] = None) -> ExternalReview:
    """A signed review of ``decision`` with its gate checks; when a check failed it is recorded
    as decision ``refused`` (its report and statement keep the decision asked for, passed
    false) under event ``<event>-failed``, as our own failed releases are."""
    failed = [c for c in checks if not c["passed"]]
    passed = not failed
    report = {"model": ref, "decision": decision, "passed": passed,
              "policy_version": policy.version, "file_sha256": em.file_sha256,
              "evaluation": evaluation_id, "checks": checks}
    review = tx.add(ExternalReview(external_model_id=em.id, evaluation_id=evaluation_id,
                                   decision=decision if passed else REFUSED, reason=reason,
                                   policy_id=policy.version or None, report=canonical(report)))
    attest(tx, key, review, subject=f"external-model:{ref}", digest=em.file_sha256,
           predicate={"decision": decision, "passed": passed, "model": ref,
                      "importer": em.actor, "evaluation": evaluation_id, "reason": reason,
                      "policy_version": policy.version, "report": report})
    tx.event(event if passed else f"{event}-failed",
             f"external model {ref}" + (summary if passed else refused
                                        + "; ".join(c["message"] for c in failed)),
             model=ref, review=review.id, passed=passed, policy_version=policy.version,
             **(extra or {}))
    return review


def _not_passed(ref: str, what: str, review: ExternalReview, checks: list, failed: list,
                policy) -> GateFailedError:
    return GateFailedError(f"external model {ref} not {what} ({len(failed)} of {len(checks)} "
                           f"checks failed; review {review.id} recorded, policy version "
                           f"{policy.version}): "
                           + "; ".join(f"{c['check']}: {c['message']}" for c in failed))


def release_external(store: Store, ref: str, *, reason: Optional[str] = None) -> ExternalModelInfo:
    """Release an approved external model through the gates of its approval, run again under
    the policy in force (its newest evaluation passed under that policy; four eyes: the
    releaser did not import it). A release those gates refuse is recorded as our own failed
    releases are (a signed review with decision ``refused``, event ``model.release-failed``),
    then GateFailedError (exit 4); a model not approved is refused with nothing written."""
    key, trust = signing_key_for(store)
    with store.read() as session:
        approved = status_and_reason(session, get_external(session, ref), trust=trust)[0] == "approved"
    remeasured = _remeasure(store, ref, trust) if approved else None
    with store.write() as tx:
        session = tx.session
        em = get_external(session, ref)
        ref = f"{em.model}:{em.number}"
        status, why = status_and_reason(session, em, trust=trust)
        if status != "approved":
            raise RefusedError(f"external model {ref} is {status}"
                               + (f" ({why})" if why and status != "released" else "")
                               + ": only an approved model can be released"
                               + (" (run `lineage model review --approve` after a passed "
                                  "evaluation)" if status == "quarantined" else ""))
        checks, newest, policy = review_gates(session, em, store.actor, key, trust, remeasured)
        failed = [c for c in checks if not c["passed"]]
        review = _record_review(tx, key, em, ref, decision="release", checks=checks,
                                evaluation_id=newest.id if newest is not None else None,
                                policy=policy, reason=reason, event="model.release",
                                summary=" released", refused=" not released: ")
        info = external_info(session, em, detail=True)
    witness(store)
    if failed:
        raise _not_passed(ref, "released", review, checks, failed, policy)
    return info


# ----------------------------------------------------------------------------- read

# The events of an external model's reviews (_record_review): each lists its review record.
MODEL_DECISIONS = ("model.review", "model.review-failed", "model.release", "model.release-failed")


def approved_file(session: Session, em: ExternalModel, trust: Trust) -> bytes:
    """The file of an approved external model, checked before a byte is parsed: approved now,
    the approval anchored in the event chain, signed by a trusted key that is not the
    importer's, about this model's file digest; then the stored bytes against that digest.
    RefusedError (exit 4) for a model not approved; IntegrityError when a check fails."""
    ref = f"{em.model}:{em.number}"
    check_listed_present(session, ExternalReview, kinds=MODEL_DECISIONS, detail="model",
                         value=ref, what=f"external model {ref}")
    reviews = external_reviews(session, em)
    status, why = status_and_reason(session, em, reviews, trust)
    if status not in LOADABLE:
        raise RefusedError(f"external model {ref} is {status}" + (f" ({why})" if why else "")
                           + ": only a model approved by a signed review may be loaded or "
                           "exported (`lineage model evaluate`, then `lineage model review "
                           "--approve`)")
    approval = [r for r in reviews if r.decision == "approve"][-1]
    label = f"review {approval.id} (the approval of external model {ref})"
    anchor_records(session, [approval, em], kinds=("model.review", "model.import"),
                   what={("external_reviews", approval.id): label,
                         ("external_models", em.id): f"external model {ref}"})
    signed = verified_attestation(session, approval, trust, what=label)
    p = signed.predicate
    if (p.get("decision"), p.get("passed"), p.get("model"), signed.digest) != (
            "approve", True, ref, em.file_sha256):
        raise IntegrityError(f"{label}: its signed statement does not approve this model's file "
                             "(decision, model or digest differ): run `lineage verify`")
    if identity(signed.signer) == identity(em.actor) or signed.keyid in trust.keyids_of([em.actor]):
        raise RefusedError(f"external model {ref} was approved by {signed.signer!r}, who "
                           "imported it: four eyes need another reviewer")
    return external_file(session, em)


def load_external(store: Store, ref: str, *, trust: Optional[str] = None,
                  checkpoint: Optional[str] = None):
    """The model of an approved external model (skops with the types trusted at import, or an
    ``OnnxClassifier``); see ``approved_file`` for what is checked first."""
    trusted = read_trust(trust or store.trust)
    check_checkpoints(store, checkpoint, trust=trusted)
    with store.read() as session:
        em = get_external(session, ref)
        data = approved_file(session, em, trusted)
        schema = json.loads(em.input_schema)
        fmt, types = em.format, json.loads(em.trusted_types)
        what = f"external model {em.model}:{em.number}"
    return parse_model(data, fmt, trusted=types,
                       classes=schema.get("model_classes") or schema["classes"], what=what)


def export_external(store: Store, ref: str, path: Path, *,
                    overwrite: bool = False) -> ExternalModelInfo:
    """Write an approved external model's file, verified, to ``path``."""
    trusted = read_trust(store.trust)
    with store.read() as session:
        em = get_external(session, ref)
        data = approved_file(session, em, trusted)
        info = external_info(session, em)
    write_atomically(path, lambda tmp: tmp.write_bytes(data))
    return info
