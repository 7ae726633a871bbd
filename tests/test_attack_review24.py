"""review24: attacks on the external-model quarantine (lineage.models.external).

The adversary can write files next to the store, write the database with raw SQL or with
lineage's own write transaction (the chain has no secret), and hand the user crafted model
files; it holds no trusted reviewer key. Tests marked xfail(strict) are attacks that succeed
today (the test asserts the secure behaviour); the others pin attacks that are stopped.
SQLite only: the attacks use raw SQL and the store's file system.
"""

import hashlib
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import test_gates
from conftest import Cli
from test_external_models import _world

from lineage.data.ingest import ingest_arrays
from lineage.data.sources import add_source
from lineage.data.transforms import append_ingest
from lineage.errors import (
    BadInputError,
    GateFailedError,
    IntegrityError,
    RefusedError,
    SnapshotNotApprovedError,
)
from lineage.models.external import evaluate_model, get_external_model, import_model, review_model
from lineage.models.registry import export_model, load_model
from lineage.review.approval import load_snapshot
from lineage.review.snapshots import create_snapshot
from lineage.review.source_reviews import review_source
from lineage.store.engine import open_store
from storeutil import drop_guards, raw_execute

BUDGET = 100_000


class Evil:
    """A pickle that writes a file when it is unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def kit(tmp_path_factory, stores):
    """The vendor's rows (the digits outside the evaluation snapshot) and a clean model and a
    useless one (trained on shuffled labels), as skops files."""
    import skops.io
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    folder = tmp_path_factory.mktemp("r24vendor")
    _, eval_ids = stores.copy("sqlite", folder, build=_world)
    X, y = load_digits(return_X_y=True)
    held = np.zeros(len(X), dtype=bool)
    held[np.asarray(eval_ids) - 1] = True
    Xv, yv = X[~held], y[~held]
    with threadpool_limits(limits=1):
        clean = LogisticRegression(max_iter=3000, random_state=0).fit(Xv, yv)
        junk = LogisticRegression(max_iter=200, random_state=0).fit(
            Xv, np.random.default_rng(0).permutation(yv))
    files = {"clean": folder / "clean.skops", "junk": folder / "junk.skops"}
    skops.io.dump(clean, files["clean"])
    skops.io.dump(junk, files["junk"])
    return {"files": files, "clean": clean, "X": X, "y": y, "folder": folder}


@pytest.fixture
def world(tmp_path, stores):
    url, _ = stores.copy("sqlite", tmp_path, build=_world)
    eng, rev = open_store(url, actor="engineer"), open_store(url, actor="reviewer")
    yield eng, rev
    eng.close()
    rev.close()


def _approved(eng, rev, path, name="vendor-clf"):
    """Import (engineer), evaluate, approve the source and the model (reviewer)."""
    import_model(eng, path, name=name, source="vendor-models")
    assert evaluate_model(eng, f"{name}:1", budget=BUDGET).passed
    review_source(rev, "vendor-models", decision="approve", reason="contract signed")
    assert review_model(rev, f"{name}:1", decision="approve").status == "approved"


def _sqlite_path(store) -> str:
    return store.url.removeprefix("sqlite:///")


# ----------------------------------------------------------------------------- attacks that work

def test_a_forged_passing_evaluation_does_not_get_a_failed_model_approved(world, kit):
    from lineage.review.policy import policy_in_force
    from lineage.review.snapshots import find_snapshot
    from lineage.store.chain import canonical
    from lineage.store.tables import ExternalEvaluation, ExternalModel

    eng, rev = world
    import_model(eng, kit["files"]["junk"], name="vendor-clf", source="vendor-models")
    real = evaluate_model(eng, "vendor-clf:1", budget=BUDGET)
    assert not real.passed and real.report["clean_accuracy"] < 0.5  # a useless model
    review_source(rev, "vendor-models", decision="approve", reason="contract signed")
    # The attacker (no key) appends a passing evaluation through the store's own transaction:
    # a well-formed record and event at the chain's head.
    attacker = open_store(eng.url, actor="engineer")
    try:
        with attacker.write() as tx:
            s = tx.session
            policy = policy_in_force(s)
            snap = find_snapshot(s, policy.evaluation_snapshot)
            em = s.query(ExternalModel).one()
            forged = {**real.report, "passed": True, "problems": [], "clean_accuracy": 0.97,
                      "message": "clean accuracy 0.9700 >= 0.9"}
            rec = tx.add(ExternalEvaluation(external_model_id=em.id, policy_id=policy.version,
                                            snapshot_id=snap.id,
                                            snapshot_digest=snap.content_digest, passed=True,
                                            report=canonical(forged)))
            tx.event("model.evaluate", "external model vendor-clf:1 evaluated on eval: passed",
                     model="vendor-clf:1", evaluation=rec.id, passed=True,
                     policy_version=policy.version)
    finally:
        attacker.close()
    # The honest reviewer runs the gate, which must still see that the model failed.
    try:
        with pytest.raises(GateFailedError, match="evaluation"):
            review_model(rev, "vendor-clf:1", decision="approve")
    finally:
        # Evidence of the break when it happens: the useless model is handed out.
        if get_external_model(eng, "vendor-clf:1").status == "approved":
            model = load_model(eng, "vendor-clf:1")
            assert (model.predict(kit["X"]) == kit["y"]).mean() < 0.5


def test_a_forged_source_approval_does_not_undo_a_revoked_source(world, kit):
    eng, rev = world
    _approved(eng, rev, kit["files"]["clean"])
    review_source(rev, "vendor-models", decision="revoke", reason="vendor breached")
    with pytest.raises(RefusedError, match="affected"):
        load_model(eng, "vendor-clf:1")
    raw_execute(eng.url, "INSERT INTO source_reviews (id, source_id, decision, reason, actor, "
                "created_at, record_digest) SELECT max(id) + 1, source_id, 'approve', 'ok', "
                "'reviewer', '2099-01-01 00:00:00', 'x' FROM source_reviews WHERE source_id = "
                "(SELECT id FROM sources WHERE name = 'vendor-models')")
    with pytest.raises((RefusedError, IntegrityError)):
        load_model(eng, "vendor-clf:1")


def test_a_forged_source_approval_does_not_pass_the_source_gate(world, kit):
    eng, rev = world
    import_model(eng, kit["files"]["clean"], name="vendor-clf", source="vendor-models")
    assert evaluate_model(eng, "vendor-clf:1", budget=BUDGET).passed
    # vendor-models was never reviewed; the attacker inserts an approval without a signature.
    raw_execute(eng.url, "INSERT INTO source_reviews (id, source_id, decision, reason, actor, "
                "created_at, record_digest) SELECT coalesce(max(id), 0) + 1, (SELECT id FROM "
                "sources WHERE name = 'vendor-models'), 'approve', 'ok', 'reviewer', "
                "'2099-01-01 00:00:00', 'x' FROM source_reviews")
    # Fails closed: the newest review is not genuine, so the source's status is unknown.
    with pytest.raises(IntegrityError, match="source 'vendor-models'.*reviewed again"):
        review_model(rev, "vendor-clf:1", decision="approve")


def test_deleting_a_models_revocation_does_not_make_it_loadable(world, kit, tmp_path):
    from lineage.review.checkpoints import write_checkpoint

    eng, rev = world
    _approved(eng, rev, kit["files"]["clean"])
    review_model(rev, "vendor-clf:1", decision="revoke", reason="backdoor reported")
    witness = tmp_path / "witness.jsonl"
    write_checkpoint(rev, witness)  # published after the revocation
    with pytest.raises(RefusedError, match="revoked"):
        load_model(eng, "vendor-clf:1", checkpoint=str(witness))
    drop_guards(eng.url, "external_reviews")
    raw_execute(eng.url, "DELETE FROM external_reviews WHERE decision = 'revoke'")
    with pytest.raises((RefusedError, IntegrityError)):
        load_model(eng, "vendor-clf:1", checkpoint=str(witness))


def test_a_policy_set_without_a_trusted_key_does_not_pass_a_useless_model(world, kit):
    from lineage.errors import LineageError
    from lineage.review.policy import get_policy, set_policy
    from lineage.store.chain import canonical
    from lineage.store.tables import Policy

    eng, rev = world
    import_model(eng, kit["files"]["junk"], name="vendor-clf", source="vendor-models")
    assert not evaluate_model(eng, "vendor-clf:1", budget=BUDGET).passed
    before = get_policy(eng)
    nobody = open_store(eng.url, actor="no-key-at-all")  # not in the trust file, holds no key
    try:
        with pytest.raises(LineageError, match="no signing key"):
            set_policy(nobody, min_clean_accuracy=0.0, max_asr=1.0, reason="tuning")
        assert get_policy(eng) == before
        # The same version appended through the store's own write: a well-formed record and
        # event at the chain's head, but signed by nobody.
        settings = {**before.settings(), "min_clean_accuracy": 0.0, "max_asr": 1.0}
        with nobody.write() as tx:
            record = tx.add(Policy(settings=canonical(settings), reason="tuning"))
            tx.event("policy.set", f"policy version {record.id}: lowered", policy=record.id,
                     changes={"min_clean_accuracy": 0.0, "max_asr": 1.0})
    finally:
        nobody.close()
    # Every gate counts only a newest version a trusted key signed, and fails closed on one
    # that is not (rather than falling back to an older one): no evaluation, no approval.
    with pytest.raises(IntegrityError, match="policy version .* not one a trusted key signed"):
        evaluate_model(eng, "vendor-clf:1", budget=BUDGET)
    review_source(rev, "vendor-models", decision="approve", reason="contract signed")
    with pytest.raises(IntegrityError, match="set the policy again"):
        review_model(rev, "vendor-clf:1", decision="approve")


def _onnx_external_weights(path, location: str, W: np.ndarray, b: np.ndarray) -> bytes:
    """A linear softmax classifier whose weights are a Constant node's tensor stored in an
    external data file ``location`` (not a graph initializer, the only place lineage looks)."""
    from onnx import TensorProto, helper, numpy_helper

    t = TensorProto()
    t.name, t.data_type = "W", TensorProto.FLOAT
    t.dims.extend(W.shape)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(W.size * 4))):
        e = t.external_data.add()
        e.key, e.value = k, v
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["W"], value=t),
         helper.make_node("MatMul", ["X", "W"], ["z"]),
         helper.make_node("Add", ["z", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "linear", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, W.shape[0]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, W.shape[1]])],
        [numpy_helper.from_array(b.astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    data = model.SerializeToString()
    path.write_bytes(data)
    return data


def test_an_onnx_model_cannot_take_its_weights_from_a_file_next_to_it(world, kit, tmp_path,
                                                                      monkeypatch):
    pytest.importorskip("onnxruntime")
    eng, rev = world
    clean = kit["clean"]
    W, b = clean.coef_.T.astype(np.float32), clean.intercept_
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    W.tofile(here / "weights.bin")  # the vendor's honest weights, beside the store
    path = tmp_path / "vendor.onnx"
    _onnx_external_weights(path, "weights.bin", W, b)
    try:
        import_model(eng, path, name="vendor-clf", source="vendor-models")
    except BadInputError as exc:
        assert "external data" in str(exc)
        return  # the secure behaviour: refused at import
    assert evaluate_model(eng, "vendor-clf:1", budget=BUDGET).passed
    review_source(rev, "vendor-models", decision="approve", reason="contract signed")
    review_model(rev, "vendor-clf:1", decision="approve")
    # After approval the attacker rewrites the file next to the store: every row becomes a 7.
    W2 = np.zeros_like(W)
    W2[:, 7] = 1.0
    W2.tofile(here / "weights.bin")
    model = load_model(eng, "vendor-clf:1")  # the approved sha256 still matches
    assert (model.predict(kit["X"]) == 7).mean() < 0.5, "the loaded model is not the approved one"


def _onnx_subgraph_domain(path, W: np.ndarray, b: np.ndarray) -> None:
    """A linear softmax classifier whose then-branch of an If runs com.microsoft::Gelu."""
    from onnx import TensorProto, helper, numpy_helper

    def branch(name, custom):
        nodes = [helper.make_node("MatMul", ["X", "W"], [f"{name}_z"]),
                 helper.make_node("Add", [f"{name}_z", "b"], [f"{name}_l"])]
        last = f"{name}_l"
        if custom:
            nodes.append(helper.make_node("Gelu", [last], [f"{name}_g"], domain="com.microsoft"))
            last = f"{name}_g"
        nodes.append(helper.make_node("Softmax", [last], [f"{name}_p"], axis=1))
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(
            f"{name}_p", TensorProto.FLOAT, [None, W.shape[1]])])

    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["probabilities"], then_branch=branch("t", True),
                          else_branch=branch("e", False))],
        "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, W.shape[0]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, W.shape[1]])],
        [numpy_helper.from_array(W.astype(np.float32), "W"),
         numpy_helper.from_array(b.astype(np.float32), "b"),
         numpy_helper.from_array(np.array(True), "cond")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def test_an_onnx_op_outside_the_standard_domains_is_refused_inside_a_subgraph(world, kit,
                                                                               tmp_path):
    pytest.importorskip("onnxruntime")
    eng, _ = world
    path = tmp_path / "sub.onnx"
    _onnx_subgraph_domain(path, kit["clean"].coef_.T, kit["clean"].intercept_)
    with pytest.raises(BadInputError, match="outside the standard domains"):
        import_model(eng, path, name="vendor-clf", source="vendor-models")


def test_an_onnx_model_with_more_outputs_than_classes_is_refused_in_one_line(world, kit,
                                                                             tmp_path):
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    eng, _ = world
    W = np.random.default_rng(0).normal(size=(64, 20)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["z"]),
         helper.make_node("Softmax", ["z"], ["probabilities"], axis=1)],
        "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 20])],
        [numpy_helper.from_array(W, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    path = tmp_path / "wide.onnx"
    path.write_bytes(model.SerializeToString())
    cli = Cli(eng.url)
    r = cli("model", "import", path, "--name", "wide", "--source", "vendor-models")
    if r.exit_code == 0:
        r = cli("model", "evaluate", "wide:1", "--budget", 1000)
    assert r.exit_code in (2, 4) and r.output.startswith("Error: "), r.output[-500:]


# ----------------------------------------------------------------------------- attacks stopped

def test_swapping_the_stored_file_after_approval_is_refused(world, kit, tmp_path):
    eng, rev = world
    _approved(eng, rev, kit["files"]["clean"])
    evil = kit["files"]["junk"].read_bytes()
    drop_guards(eng.url, "external_model_chunks")
    raw_execute(eng.url, "UPDATE external_model_chunks SET data = ?", (evil,))
    with pytest.raises(IntegrityError, match="does not match its recorded sha256"):
        load_model(eng, "vendor-clf:1")
    with pytest.raises(IntegrityError):
        export_model(eng, "vendor-clf:1", tmp_path / "out.skops")
    assert not (tmp_path / "out.skops").exists()
    # ... and with the file's digest rewritten to match, the record no longer anchors.
    drop_guards(eng.url, "external_models")
    raw_execute(eng.url, "UPDATE external_models SET file_sha256 = ?, file_size = ?",
                (hashlib.sha256(evil).hexdigest(), len(evil)))
    with pytest.raises(IntegrityError, match="not recorded in the event chain"):
        load_model(eng, "vendor-clf:1")


def test_an_approval_replayed_onto_another_model_is_refused(world, kit):
    """The same file imported twice (vendor-clf and vendor-copy): approving one leaves the other
    quarantined; a copy of the approval row and its envelope onto the other is refused."""
    eng, rev = world
    import_model(eng, kit["files"]["clean"], name="vendor-copy", source="vendor-models")
    _approved(eng, rev, kit["files"]["clean"])
    assert get_external_model(eng, "vendor-copy:1").status == "quarantined"
    with pytest.raises(RefusedError, match="vendor-copy:1 is quarantined"):
        load_model(eng, "vendor-copy:1")
    path = _sqlite_path(eng)
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        copy_id = conn.execute("SELECT id FROM external_models WHERE model = 'vendor-copy'"
                               ).fetchone()[0]
        row = conn.execute("SELECT id, evaluation_id, report, policy_id, actor, created_at, "
                           "record_digest FROM external_reviews WHERE decision = 'approve'"
                           ).fetchone()
        env = conn.execute("SELECT subject, digest, keyid, signer, envelope, actor, created_at, "
                           "record_digest FROM attestations WHERE record_table = "
                           "'external_reviews' AND record_id = ?", (row[0],)).fetchone()
        new_id = conn.execute("SELECT max(id) + 1 FROM external_reviews").fetchone()[0]
        conn.execute("INSERT INTO external_reviews (id, external_model_id, evaluation_id, "
                     "decision, reason, policy_id, report, actor, created_at, record_digest) "
                     "VALUES (?, ?, ?, 'approve', NULL, ?, ?, ?, ?, ?)",
                     (new_id, copy_id, row[1], row[3], row[2], row[4], row[5], row[6]))
        conn.execute("INSERT INTO attestations (id, record_table, record_id, subject, digest, "
                     "keyid, signer, envelope, actor, created_at, record_digest) SELECT "
                     "max(id) + 1, 'external_reviews', ?, ?, ?, ?, ?, ?, ?, ?, ? FROM "
                     "attestations", (new_id, *env))
        conn.commit()
    finally:
        conn.close()
    assert get_external_model(eng, "vendor-copy:1").status == "approved"  # the rows say so
    with pytest.raises(IntegrityError, match="not recorded in the event chain"):
        load_model(eng, "vendor-copy:1")


def test_an_approval_does_not_carry_over_to_a_look_alike_name_or_version_2(world, kit):
    eng, rev = world
    _approved(eng, rev, kit["files"]["clean"])
    # A trailing space is the same name (a new version, quarantined); full-width letters are
    # another model, quarantined too.
    assert import_model(eng, kit["files"]["junk"], name="vendor-clf ",
                        source="vendor-models").ref == "vendor-clf:2"
    import_model(eng, kit["files"]["junk"], name="\uff56endor-clf", source="vendor-models")
    for ref in ("vendor-clf", "vendor-clf:2", "\uff56endor-clf:1", " vendor-clf:2 "):
        with pytest.raises(RefusedError, match="quarantined"):
            load_model(eng, ref)
    assert load_model(eng, "vendor-clf:1") is not None


def test_a_skops_file_nesting_a_pickle_is_never_unpickled(world, kit, tmp_path):
    """A skops file whose schema is the clean model's but whose coef_ array member is replaced
    by an object-dtype .npy (a pickle inside): skops refuses it without unpickling."""
    eng, _ = world
    marker = tmp_path / "pwned"
    src = kit["files"]["clean"].read_bytes()
    buf = io.BytesIO()
    np.save(buf, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        schema = json.loads(zin.read("schema.json"))
        coef = schema["content"]["content"]["coef_"]
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == coef["file"]:
                data = buf.getvalue()
            zout.writestr(item, data)
    path = tmp_path / "nested.skops"
    path.write_bytes(out.getvalue())
    with pytest.raises(BadInputError):
        import_model(eng, path, name="vendor-clf", source="vendor-models")
    assert not marker.exists()
    # A pickle inside a zip named .skops but without a schema is refused too.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("model.pkl", pickle.dumps(Evil(marker)))
    path.write_bytes(out.getvalue())
    with pytest.raises(BadInputError, match="not a readable skops file"):
        import_model(eng, path, name="vendor-clf", source="vendor-models")
    assert not marker.exists()


def test_a_skops_file_naming_an_unsafe_function_is_refused_unless_trusted(world, kit, tmp_path):
    """A skops schema edited to hold a function node for builtins.exec: listed, refused."""
    eng, _ = world
    src = kit["files"]["clean"].read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        schema = json.loads(zin.read("schema.json"))
        schema["content"]["content"]["evil"] = {
            "__class__": "exec", "__module__": "builtins", "__loader__": "FunctionNode",
            "__id__": 1}
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "schema.json":
                data = json.dumps(schema).encode()
            zout.writestr(item, data)
    path = tmp_path / "fn.skops"
    path.write_bytes(out.getvalue())
    with pytest.raises(BadInputError, match="builtins.exec"):
        import_model(eng, path, name="vendor-clf", source="vendor-models")


def _onnx_linear(path, W, b, *, domain="", extra_input=False, external_init=False):
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, W.shape[0]])]
    nodes = [helper.make_node("MatMul", ["X", "W"], ["z"]),
             helper.make_node("Add", ["z", "b"], ["l"])]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, W.shape[1]]))
        nodes.append(helper.make_node("Add", ["l", "Y"], ["l2"]))
    else:
        nodes.append(helper.make_node("Identity", ["l"], ["l2"]))
    nodes.append(helper.make_node("Softmax", ["l2"], ["probabilities"], axis=1,
                                  domain=domain))
    w = numpy_helper.from_array(W.astype(np.float32), "W")
    if external_init:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        e = w.external_data.add()
        e.key, e.value = "location", "weights.bin"
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(
        "probabilities", TensorProto.FLOAT, [None, W.shape[1]])],
        [w, numpy_helper.from_array(b.astype(np.float32), "b")])
    opsets = [helper.make_opsetid("", 15)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("kind, start", [
    ("domain", "the ONNX file uses operators outside the standard domains (evil.ops)"),
    ("inputs", "the ONNX model has 2 inputs"),
    ("external", "the ONNX file refers to external data files"),
])
def test_a_crafted_onnx_file_is_refused_at_import(world, kit, tmp_path, kind, start):
    pytest.importorskip("onnx")
    eng, _ = world
    path = tmp_path / f"{kind}.onnx"
    _onnx_linear(path, kit["clean"].coef_.T, kit["clean"].intercept_,
                 domain="evil.ops" if kind == "domain" else "", extra_input=kind == "inputs",
                 external_init=kind == "external")
    with pytest.raises(BadInputError, match=f"^{path.name}: " + start.replace("(", r"\(")
                       .replace(")", r"\)")):
        import_model(eng, path, name="vendor-clf", source="vendor-models")


def test_export_does_not_overwrite_or_follow_a_symlink(world, kit, tmp_path):
    eng, rev = world
    _approved(eng, rev, kit["files"]["clean"])
    cli = Cli(eng.url)
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    r = cli("model", "export", "vendor-clf:1", "--out", target)
    assert r.exit_code == 2 and "already exists" in r.output, r.output
    assert target.read_text() == "keep me"
    link = tmp_path / "link.skops"
    link.symlink_to(target)
    r = cli("model", "export", "vendor-clf:1", "--out", link)
    assert r.exit_code == 2 and "already exists" in r.output, r.output
    dangling = tmp_path / "dangling.skops"
    dangling.symlink_to(tmp_path / "elsewhere.skops")
    r = cli("model", "export", "vendor-clf:1", "--out", dangling)
    assert r.exit_code in (0, 2), r.output
    assert not (tmp_path / "elsewhere.skops").exists()  # the link is not followed
    r = cli("model", "export", "vendor-clf:1", "--out", link, "--force")
    assert r.exit_code == 0, r.output
    assert target.read_text() == "keep me" and not link.is_symlink()
    assert hashlib.sha256(link.read_bytes()).hexdigest() == hashlib.sha256(
        kit["files"]["clean"].read_bytes()).hexdigest()


def test_verify_names_a_forged_source_review_and_a_deleted_revocation(world, kit):
    """What `lineage verify` sees of the attacks above that load_model does not."""
    eng, rev = world
    _approved(eng, rev, kit["files"]["clean"])
    review_model(rev, "vendor-clf:1", decision="revoke", reason="backdoor reported")
    cli = Cli(eng.url)
    assert cli("verify").exit_code == 0
    drop_guards(eng.url, "external_reviews")
    raw_execute(eng.url, "DELETE FROM external_reviews WHERE decision = 'revoke'")
    r = cli("verify")
    assert r.exit_code == 5 and "deleted behind the store's back" in r.output, r.output


# ----------------------------------------------------------------------------- snapshots too

reviewed = test_gates.reviewed  # digits, split, train/eval snapshots, policy (SQLite and PostgreSQL)

_FORGED_SOURCE_APPROVAL = (
    "INSERT INTO source_reviews (id, source_id, decision, reason, actor, created_at, "
    "record_digest) SELECT (SELECT coalesce(max(id), 0) + 1 FROM source_reviews), id, 'approve', "
    "'ok', 'reviewer', '2099-01-01 00:00:00', 'x' FROM sources WHERE name = ?")


def test_a_forged_source_approval_does_not_undo_a_revoked_source_of_a_snapshot(reviewed):
    cli = reviewed
    assert cli("snapshot", "approve", "train", "--reason", "ok", actor="reviewer").exit_code == 0
    r = cli("source", "review", "sklearn-digits", "--revoke", "--reason", "license withdrawn",
            actor="reviewer")
    assert r.exit_code == 0, r.output
    store = open_store(cli.url)
    with pytest.raises(SnapshotNotApprovedError, match="now revoked"):
        load_snapshot("train", store=store)
    raw_execute(cli.url, _FORGED_SOURCE_APPROVAL, ("sklearn-digits",))
    with pytest.raises(IntegrityError, match="source 'sklearn-digits'.*reviewed again"):
        load_snapshot("train", store=store)
    r = cli("train", "--snapshot", "train", "--model", "clf", actor="engineer")
    assert r.exit_code == 5 and "reviewed again" in r.output, r.output
    store.close()


def test_a_forged_approval_of_a_quarantined_source_fails_the_snapshot_sources_gate(reviewed):
    cli = reviewed
    store = open_store(cli.url, actor="engineer")
    X, y = np.zeros((5, 64), dtype=np.uint8), np.arange(5, dtype=np.int64)
    add_source(store, "crowd", kind="crowdsourced", uri="s3://v/b.csv", license="CC0-1.0")
    info = ingest_arrays(store, X, y, source="crowd", dataset="digits")
    append_ingest(store, version="digits-train", ingest=info.id, name="with-crowd",
                  reason="more rows")
    create_snapshot(store, "crowd-snap", version="with-crowd")
    raw_execute(cli.url, _FORGED_SOURCE_APPROVAL, ("crowd",))
    r = cli("snapshot", "approve", "crowd-snap", "--reason", "ok", actor="reviewer")
    assert r.exit_code == 5, r.output
    assert "source 'crowd' is not recorded in the event chain" in r.output
    assert "reviewed again" in r.output
    store.close()


def test_deleting_a_snapshots_revocation_does_not_make_it_loadable(reviewed):
    cli = reviewed
    assert cli("snapshot", "approve", "train", "--reason", "ok", actor="reviewer").exit_code == 0
    r = cli("snapshot", "revoke", "train", "--reason", "poisoned", actor="reviewer")
    assert r.exit_code == 0, r.output
    store = open_store(cli.url)
    with pytest.raises(SnapshotNotApprovedError, match="revoked"):
        load_snapshot("train", store=store)
    drop_guards(cli.url, "snapshot_reviews")
    raw_execute(cli.url, "DELETE FROM snapshot_reviews WHERE decision = 'revoke'")
    with pytest.raises(IntegrityError, match="snapshot_reviews record .* is gone"):
        load_snapshot("train", store=store)
    store.close()
