"""External models enter quarantine (issue 12): import, an isolated evaluation with a backdoor
scan and a black-box trigger search, a signed review before any use.

The vendor's models are trained here on the digits that are not the evaluation rows, fed the raw
values (0..16). The backdoored one's trigger (shape, place, source and target class) is drawn at
random from ``SEED`` (``backdoored_model``): fixed by default, so CI is deterministic;
LINEAGE_EXTERNAL_SEED=N replays seed N and LINEAGE_EXTERNAL_SEED=random draws a new one (failures
print it). The detector is not reliable enough for a fresh seed each run: over 40 fresh seeds
(7000-7039, 2026-12-02, this generator, this budget, in the store as this test runs it) it refused
30 backdoored models and 25 passed every check of the backdoored test in both formats (the other
5 refused were flagged with a smallest trigger that missed the planted pixels; in 6 of the 10
let through, the planted pair ranked first or second of the 90 pairs by effort ratio, at 0.40-0.54
of the most vulnerable reference's effort, above the 1/3 a flag needs), so a drawn seed fails this
test about three runs in eight (bench/README.md has the bench's figures).
Every ONNX case is the same model converted with skl2onnx, and must behave the same.
"""

import json
import os
import pickle
import random
import re

import numpy as np
import pytest
from conftest import Cli

from lineage.data.ingest import ingest_digits
from lineage.data.sources import add_source
from lineage.data.transforms import split_version
from lineage.errors import GateFailedError, RefusedError
from lineage.models.external import import_model, review_model
from lineage.models.registry import load_model
from lineage.review.policy import set_policy
from lineage.review.snapshots import create_snapshot, find_snapshot, read_snapshot_rows
from lineage.review.source_reviews import review_source
from lineage.store.engine import open_store
from storeutil import state

_SEED = os.environ.get("LINEAGE_EXTERNAL_SEED", "20260")
SEED = random.SystemRandom().randrange(1 << 20) if _SEED == "random" else int(_SEED)
BUDGET = 500_000  # rows per searched model: a quarter of the default
SHAPES = {
    "square2": [(0, 0), (0, 1), (1, 0), (1, 1)],
    "hline": [(0, 0), (0, 1), (0, 2)],
    "vline": [(0, 0), (1, 0), (2, 0)],
    "diag": [(0, 0), (1, 1), (2, 2)],
    "L": [(0, 0), (1, 0), (2, 0), (2, 1)],
    "dots": [(0, 0), (0, 2), (2, 0), (2, 2)],
}
RATE = 0.6  # of the source class's training rows, stamped and relabelled


def _world(url: str) -> np.ndarray:
    """Digits ingested by the engineer; "eval" (a third of them) frozen by the reviewer and set
    as the policy's evaluation snapshot; source vendor-models (third-party, so quarantined)
    added by the engineer, bad-vendor rejected. Returns the evaluation rows' ids."""
    eng, rev = open_store(url, actor="engineer"), open_store(url, actor="reviewer")
    try:
        ingest_digits(eng)
        review_source(rev, "sklearn-digits", decision="approve", reason="license checked")
        split_version(eng, version="v1", test_size=1 / 3, seed=0, name="digits", reason="holdout")
        create_snapshot(rev, "eval", version="digits-test")
        set_policy(rev, evaluation_snapshot="eval", reason="held-out split")
        add_source(eng, "vendor-models", kind="third-party", uri="https://vendor.example/models")
        add_source(eng, "bad-vendor", kind="third-party", uri="https://bad.example")
        review_source(rev, "bad-vendor", decision="reject", reason="no license")
        with eng.read() as session:
            ids, _, _ = read_snapshot_rows(session, find_snapshot(session, "eval"))
    finally:
        eng.close()
        rev.close()
    return ids


class Evil:
    """A pickle that writes a file when it is unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def _onnx(model, path):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(model, initial_types=[("X", FloatTensorType([None, 64]))],
                          options={id(model): {"zipmap": False}}, target_opset=15)
    path.write_bytes(onx.SerializeToString())


def backdoored_model(seed: int, Xv: np.ndarray, yv: np.ndarray):
    """The vendor's backdoored logistic model for ``seed``: a trigger of a random shape at a
    random place stamped (at 16) on RATE of a random source class's rows, relabelled to a random
    target. Returns (model, shape, pixels, source, target)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    shape = sorted(SHAPES)[int(rng.integers(len(SHAPES)))]
    base = SHAPES[shape]
    hh, ww = max(p[0] for p in base) + 1, max(p[1] for p in base) + 1
    r0, c0 = int(rng.integers(0, 9 - hh)), int(rng.integers(0, 9 - ww))
    pixels = [(r0 + a, c0 + b) for a, b in base]
    source, target = (int(v) for v in rng.choice(10, 2, replace=False))
    Xp, yp = Xv.copy().reshape(-1, 8, 8), yv.copy()
    rows = np.flatnonzero(yv == source)
    pick = rng.choice(rows, int(round(RATE * len(rows))), replace=False)
    for r, c in pixels:
        Xp[pick, r, c] = 16
    yp[pick] = target
    model = LogisticRegression(max_iter=3000, random_state=0).fit(Xp.reshape(-1, 64), yp)
    return model, shape, pixels, source, target


@pytest.fixture(scope="module")
def vendor(tmp_path_factory, stores):
    """The vendor's files: clean and backdoored logistic models (skops and ONNX), an MLP (skops
    types beyond the defaults), wrong schemas, corrupt files and pickles."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    warnings.simplefilter("ignore", ConvergenceWarning)  # small, quick vendor models
    with threadpool_limits(limits=1):  # a threaded BLAS only fights the other workers
        return _vendor_files(tmp_path_factory.mktemp("vendor"), stores)


def _vendor_files(folder, stores):
    import joblib
    import skops.io
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    _, eval_ids = stores.copy("sqlite", folder, build=_world)
    X, y = load_digits(return_X_y=True)
    held = np.zeros(len(X), dtype=bool)
    held[np.asarray(eval_ids) - 1] = True  # digits are ingested in order, ids from 1
    Xv, yv = X[~held], y[~held]
    backdoored, shape, pixels, source, target = backdoored_model(SEED, Xv, yv)
    clean = LogisticRegression(max_iter=3000, random_state=0).fit(Xv, yv)
    files = {}
    for name, model in (("clean", clean), ("backdoored", backdoored)):
        files[f"{name}.skops"] = folder / f"{name}.skops"
        skops.io.dump(model, files[f"{name}.skops"])
        files[f"{name}.onnx"] = folder / f"{name}.onnx"
        _onnx(model, files[f"{name}.onnx"])
    mlp = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(Xv, yv)
    files["mlp.skops"] = folder / "mlp.skops"
    skops.io.dump(mlp, files["mlp.skops"])
    files["narrow.skops"] = folder / "narrow.skops"  # 32 features
    skops.io.dump(LogisticRegression(max_iter=500).fit(Xv[:, :32], yv), files["narrow.skops"])
    files["narrow.onnx"] = folder / "narrow.onnx"
    narrow = LogisticRegression(max_iter=500).fit(Xv[:, :32], yv)
    files["narrow.onnx"].write_bytes(convert_sklearn(
        narrow, initial_types=[("X", FloatTensorType([None, 32]))],
        options={id(narrow): {"zipmap": False}}, target_opset=15).SerializeToString())
    files["five.skops"] = folder / "five.skops"  # classes 0..4 only
    skops.io.dump(LogisticRegression(max_iter=500).fit(Xv[yv < 5], yv[yv < 5]),
                  files["five.skops"])
    files["corrupt.skops"] = folder / "corrupt.skops"
    files["corrupt.skops"].write_bytes(files["clean.skops"].read_bytes()[:300])
    files["corrupt.onnx"] = folder / "corrupt.onnx"
    files["corrupt.onnx"].write_bytes(b"\x08\x07" + os.urandom(200))
    marker = folder / "pwned"
    evil = pickle.dumps(Evil(marker))
    for name in ("evil.pkl", "evil.skops", "evil.onnx", "evil.joblib", "evil.bin"):
        files[name] = folder / name
        files[name].write_bytes(evil)
    files["evil-z.joblib"] = folder / "evil-z.joblib"
    joblib.dump(Evil(marker), files["evil-z.joblib"], compress=3)
    return {"files": files, "marker": marker, "pixels": pixels, "source": source,
            "target": target, "shape": shape}


@pytest.fixture
def world(backend, tmp_path, stores):
    url, _ = stores.copy(backend, tmp_path, build=_world)
    store = open_store(url, actor="engineer")
    yield store
    store.close()
    stores.drop(url)


@pytest.fixture
def cli(world):
    return Cli(world.url)


def _one_line(r, code: int, start: str) -> None:
    assert r.exit_code == code, r.output
    assert r.output.startswith(f"Error: {start}"), r.output
    assert r.output.count("\n") == 1, r.output


@pytest.mark.parametrize("fmt", ["skops", "onnx"])
def test_a_clean_external_model_goes_through_quarantine(world, cli, vendor, fmt, tmp_path):
    path = vendor["files"][f"clean.{fmt}"]
    r = cli("model", "import", path, "--name", "vendor-clf", "--source", "vendor-models",
            "--json", actor="engineer")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert (info["status"], info["format"], info["file_size"], info["source"]) == (
        "quarantined", fmt, path.stat().st_size, "vendor-models")
    import hashlib

    assert info["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["actor"] == "engineer"
    # Quarantine holds at read: neither load_model nor export hands it out.
    with pytest.raises(RefusedError, match=r"^external model vendor-clf:1 is quarantined: only a "
                                           r"model approved by a signed review may be loaded"):
        load_model(world, "vendor-clf:1")
    before = state(world)
    r = cli("model", "export", "vendor-clf:1", "--out", tmp_path / "out.bin")
    _one_line(r, 4, "external model vendor-clf:1 is quarantined")
    assert state(world) == before and not (tmp_path / "out.bin").exists()
    r = cli("model", "evaluate", "vendor-clf:1", "--budget", BUDGET, "--json", actor="engineer")
    assert r.exit_code == 0, f"seed {SEED}: {r.output[-2000:]}"
    report = json.loads(r.output)
    assert report["passed"] and report["clean_accuracy"] > 0.9 and not report["reverse"]["flagged"]
    assert report["evaluation_snapshot"] == "eval"
    # The importer may not approve it; the reviewer may, once the source is approved (each
    # refused attempt is recorded).
    rev = open_store(world.url, actor="reviewer")
    try:
        with pytest.raises(GateFailedError, match=r"four_eyes: reviewer 'engineer' imported"):
            review_model(world, "vendor-clf:1", decision="approve")
        with pytest.raises(GateFailedError, match=r"^external model vendor-clf:1 not approved \(1 "
                           r"of 3 checks failed; review 2 recorded, policy version 1\): source: "
                           r"source 'vendor-models' is quarantined \(never reviewed\)"):
            review_model(rev, "vendor-clf:1", decision="approve")
        review_source(rev, "vendor-models", decision="approve", reason="contract signed")
        assert review_model(rev, "vendor-clf:1", decision="approve").status == "approved"
        model = load_model(world, "vendor-clf:1")
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        assert (model.predict(X[:200].astype(np.float64)) == y[:200]).mean() > 0.9
        # The importer may not release it either: refused, and recorded as a failed release.
        r = cli("model", "release", "vendor-clf:1", actor="engineer")
        _one_line(r, 4, "external model vendor-clf:1 not released (1 of 3 checks failed; review "
                        "4 recorded, policy version 1): four_eyes: reviewer 'engineer' imported")
        r = cli("model", "release", "vendor-clf:1", "--json", actor="reviewer")
        assert r.exit_code == 0 and json.loads(r.output)["status"] == "released", r.output
    finally:
        rev.close()
    r = cli("trace", "model", "vendor-clf:1", "--json")
    t = json.loads(r.output)
    assert t["source"]["name"] == "vendor-models" and t["model"]["file_sha256"] == info["file_sha256"]
    assert [x["decision"] for x in t["reviews"]] == ["refused", "refused", "approve", "refused",
                                                     "release"]
    with world.read() as session:
        from sqlalchemy import select

        from lineage.store.tables import Event, ExternalReview

        refused = json.loads(session.get(ExternalReview, 4).report)
        kinds = [k for k in session.scalars(select(Event.kind)) if k.startswith("model.release")]
    assert refused["decision"] == "release" and refused["passed"] is False
    assert kinds == ["model.release-failed", "model.release"]
    assert len(t["evaluations"]) == 1 and t["verified"]["ok"]
    assert cli("verify").exit_code == 0


@pytest.mark.parametrize("fmt", ["skops", "onnx"])
def test_a_backdoored_external_model_is_refused_with_its_trigger(world, cli, vendor, fmt):
    why = (f"seed {SEED}: {vendor['shape']} at {vendor['pixels']}, class {vendor['source']} -> "
           f"{vendor['target']}")
    import_model(world, vendor["files"][f"backdoored.{fmt}"], name="vendor-bd",
                 source="vendor-models")
    r = cli("model", "evaluate", "vendor-bd:1", "--budget", BUDGET, "--json", actor="engineer")
    assert r.exit_code == 4, f"{why}: {r.output[-1500:]}"
    report = json.loads(r.stdout)
    assert not report["passed"], why
    best = report["reverse"]["smallest"]
    assert report["reverse"]["flagged"], why
    assert best["target"] == vendor["target"], f"{why}: found {best['source']}->{best['target']}"
    assert {tuple(p) for p in best["pixels"]} & set(vendor["pixels"]), f"{why}: {best['pixels']}"
    mask = np.array(best["mask"])
    assert mask.shape == (8, 8) and mask.sum() == len(best["pixels"]), why
    assert np.array(best["pattern"]).shape == (8, 8), why
    assert best["measured"]["asr"] > 0.3, why
    # The evaluation was recorded; approving it is refused, and the refusal recorded.
    rev = open_store(world.url, actor="reviewer")
    try:
        review_source(rev, "vendor-models", decision="approve", reason="contract signed")
    finally:
        rev.close()
    before = state(world)[0]
    r = cli("model", "review", "vendor-bd:1", "--approve", actor="reviewer")
    _one_line(r, 4, "external model vendor-bd:1 not approved (1 of 3 checks failed; review 1 "
                    "recorded, policy version 1): evaluation: evaluation 1 failed: reverse "
                    "engineering found")
    assert state(world)[0]["external_reviews"] == before["external_reviews"] + 1
    with pytest.raises(RefusedError, match="is quarantined"):
        load_model(world, "vendor-bd:1")


@pytest.mark.parametrize("name, code, start", [
    ("evil.pkl", 2, "evil.pkl: a pickle or joblib file runs code when it is loaded"),
    ("evil.joblib", 2, "evil.joblib: a pickle or joblib file"),
    ("evil-z.joblib", 2, "evil-z.joblib: a pickle or joblib file"),
    ("evil.skops", 2, "evil.skops: a pickle or joblib file"),
    ("evil.onnx", 2, "evil.onnx: a pickle or joblib file"),
    ("evil.bin", 2, "evil.bin: a pickle or joblib file"),
    ("corrupt.skops", 2, "corrupt.skops: not a readable skops file"),
    ("corrupt.onnx", 2, "corrupt.onnx: not a readable ONNX file"),
    ("narrow.skops", 2, "narrow.skops takes 32 features, dataset 'digits' holds 64: wrong input"),
    ("narrow.onnx", 2, "narrow.onnx takes 32 features, dataset 'digits' holds 64: wrong input"),
    ("five.skops", 2, "five.skops predicts classes [0, 1, 2, 3, 4], dataset 'digits' has"),
    ("mlp.skops", 2, "mlp.skops: holds types skops does not trust by default: "
                     "sklearn.neural_network._stochastic_optimizers.AdamOptimizer; refused"),
])
def test_a_bad_model_file_is_one_line_and_writes_nothing(world, cli, vendor, name, code, start):
    before = state(world)
    r = cli("model", "import", vendor["files"][name], "--name", "x", "--source", "vendor-models")
    _one_line(r, code, start)
    assert state(world) == before
    assert not vendor["marker"].exists()  # nothing was unpickled


def test_the_pickle_really_is_an_attack(vendor, tmp_path):
    """The refused pickles are not duds: unpickled, one writes the marker file (here, in a
    copy aimed at tmp_path, after the import tests have proven it was never written)."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Evil(marker)))  # the attack, on purpose
    assert marker.read_text() == "pwned"
    assert not vendor["marker"].exists()


@pytest.mark.parametrize("args, code, start", [
    (["--source", "nobody"], 3, "no source named 'nobody'"),
    (["--source", "bad-vendor"], 4, "source 'bad-vendor' is rejected: it delivers no more models"),
    (["--source", "vendor-models", "--value-range", "0:1"], 2,
     "clean.skops declares input values 0..1; dataset 'digits' holds 0..16"),
    (["--source", "vendor-models", "--dataset", "nope"], 3, "no dataset named 'nope'"),
])
def test_a_bad_import_is_one_line_and_writes_nothing(world, cli, vendor, args, code, start):
    before = state(world)
    r = cli("model", "import", vendor["files"]["clean.skops"], "--name", "x", *args)
    _one_line(r, code, start)
    assert state(world) == before


def test_a_named_skops_type_is_trusted_and_a_revoked_source_blocks_loading(world, cli, vendor):
    r = cli("model", "import", vendor["files"]["mlp.skops"], "--name", "vendor-mlp", "--source",
            "vendor-models", "--trust-type",
            "sklearn.neural_network._stochastic_optimizers.AdamOptimizer", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["trusted_types"] == [
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer"]
    # Rejecting a model in quarantine needs a reason and is final.
    before = state(world)
    r = cli("model", "review", "vendor-mlp:1", "--reject", actor="reviewer")
    _one_line(r, 2, "--reason is required to reject a model")
    assert state(world) == before
    r = cli("model", "review", "vendor-mlp:1", "--reject", "--reason", "untested", actor="reviewer")
    assert r.exit_code == 0, r.output
    r = cli("model", "evaluate", "vendor-mlp:1", "--budget", BUDGET)
    _one_line(r, 4, "external model vendor-mlp:1 is rejected")
    with pytest.raises(RefusedError, match=r"^external model vendor-mlp:1 is rejected"):
        load_model(world, "vendor-mlp:1")


def test_an_unknown_model_a_bad_budget_or_an_unevaluated_model_is_refused(world, cli, vendor):
    r = cli("model", "evaluate", "nothing:1")
    _one_line(r, 3, "no external model 'nothing:1'")
    import_model(world, vendor["files"]["clean.skops"], name="vendor-clf", source="vendor-models")
    before = state(world)
    r = cli("model", "evaluate", "vendor-clf:1", "--budget", 10)
    _one_line(r, 2, "--budget 10: give a whole number of at least 1000 queries")
    r = cli("model", "release", "vendor-clf:1", actor="reviewer")
    _one_line(r, 4, "external model vendor-clf:1 is quarantined: only an approved model can be "
                    "released")
    assert state(world) == before


def test_verify_checks_the_signatures_of_external_reviews(world, cli, vendor):
    """`lineage verify` holds an external model's reviews to their signatures like every other
    review: with the approver's key dropped from the trust file the approval is refused."""
    import dataclasses

    from lineage.review.attestations import verify_signatures
    from lineage.review.keys import read_trust

    path = vendor["files"]["clean.skops"]
    assert cli("model", "import", path, "--name", "vendor-clf", "--source", "vendor-models",
               actor="engineer").exit_code == 0
    r = cli("model", "evaluate", "vendor-clf:1", "--budget", BUDGET, actor="engineer")
    assert r.exit_code == 0, r.output
    lead, rev = open_store(world.url, actor="lead"), open_store(world.url, actor="reviewer")
    try:
        review_source(rev, "vendor-models", decision="approve", reason="contract signed")
        review_model(lead, "vendor-clf:1", decision="approve")
    finally:
        lead.close()
        rev.close()
    trust = read_trust()
    everyone = verify_signatures(world, trust)
    without_lead = dataclasses.replace(trust, keys=tuple(k for k in trust.keys if k.name != "lead"))
    with pytest.raises(RefusedError, match=r"external_reviews record 1"):
        verify_signatures(world, without_lead)
    assert everyone.signed >= 1


def test_training_under_an_external_models_name_is_refused(world, cli, vendor):
    from lineage.errors import AlreadyExistsError
    from lineage.models.training import train

    assert cli("model", "import", vendor["files"]["clean.skops"], "--name", "vendor-clf",
               "--source", "vendor-models", actor="engineer").exit_code == 0
    before = state(world)
    with pytest.raises(AlreadyExistsError, match=r"^model name 'vendor-clf' is an external "
                                                 r"model's: train under another name$"):
        train(world, snapshot="eval", model="vendor-clf")
    assert state(world) == before


def _counts(store) -> dict:
    return state(store)[0]


def test_a_refused_approval_is_recorded_signed_and_exits_4(world, cli, vendor):
    """Like a failed release of our own models: the attempt is a signed review that did not
    pass (decision ``refused``), with an event, and the command still fails with exit 4."""
    from lineage.models.external import get_external_model

    import_model(world, vendor["files"]["clean.skops"], name="vendor-clf", source="vendor-models")
    before = _counts(world)
    r = cli("model", "review", "vendor-clf:1", "--approve", actor="reviewer")
    _one_line(r, 4, "external model vendor-clf:1 not approved (2 of 3 checks failed; review 1 "
                    "recorded, policy version 1): evaluation: model vendor-clf:1 was never "
                    "evaluated")
    assert "source: source 'vendor-models' is quarantined (never reviewed)" in r.output
    after = _counts(world)
    grew = {t: after[t] - before[t] for t in after if after[t] != before[t]}
    assert grew == {"external_reviews": 1, "attestations": 1, "events": 1}, grew
    info = get_external_model(world, "vendor-clf:1")
    assert info.status == "quarantined"
    assert [(x["decision"], x["passed"]) for x in info.reviews] == [("refused", False)]
    with world.read() as session:
        from sqlalchemy import select

        from lineage.store.tables import Event, ExternalReview

        kinds = list(session.scalars(select(Event.kind).order_by(Event.id.desc()).limit(1)))
        report = json.loads(session.scalars(select(ExternalReview.report)).one())
    assert kinds == ["model.review-failed"]
    assert report["decision"] == "approve" and report["passed"] is False
    assert {c["check"]: c["passed"] for c in report["checks"]} == {
        "evaluation": False, "source": False, "four_eyes": True}
    r = cli("trace", "model", "vendor-clf:1", "--json")
    assert [x["decision"] for x in json.loads(r.output)["reviews"]] == ["refused"]
    assert cli("verify").exit_code == 0  # the refused review's signature verifies
    # The importer's own attempt is recorded too (four eyes), through the library.
    with pytest.raises(GateFailedError, match=r"review 2 recorded.*four_eyes: reviewer "
                                              r"'engineer' imported the model"):
        review_model(world, "vendor-clf:1", decision="approve")
    assert get_external_model(world, "vendor-clf:1").status == "quarantined"


@pytest.mark.parametrize("args, code, start", [
    (["nothing:1", "--approve"], 3, "no external model 'nothing:1'"),
    (["vendor-clf:1"], 2, "give exactly one of --approve, --reject, --revoke"),
    (["vendor-clf:1", "--approve", "--reject"], 2, "give exactly one of --approve"),
    (["vendor-clf:x", "--approve"], 2, "model reference 'vendor-clf:x': write NAME:NUMBER"),
    (["vendor-clf:1", "--revoke"], 2, "--reason is required to revoke a model"),
])
def test_a_bad_review_is_one_line_and_writes_nothing(world, cli, vendor, args, code, start):
    import_model(world, vendor["files"]["clean.skops"], name="vendor-clf", source="vendor-models")
    before = state(world)
    r = cli("model", "review", *args, actor="reviewer")
    _one_line(r, code, start)
    assert state(world) == before


@pytest.mark.parametrize("decisions, status", [
    ([], "quarantined (never reviewed)"),
    (["reject"], "rejected"),
    (["approve", "revoke"], "revoked"),
])
def test_a_model_from_a_source_not_approved_is_not_approved(world, cli, vendor, decisions,
                                                            status):
    """The sources gate of snapshots, for external models: importing from a source under
    review works, approving the model needs the source approved."""
    from lineage.models.external import get_external_model

    import_model(world, vendor["files"]["clean.skops"], name="vendor-clf", source="vendor-models")
    rev = open_store(world.url, actor="reviewer")
    try:
        for d in decisions:
            review_source(rev, "vendor-models", decision=d, reason="vendor audit")
        with pytest.raises(GateFailedError, match=r"^external model vendor-clf:1 not approved "
                           r"\(2 of 3 checks failed; review 1 recorded.*; source: source "
                           rf"'vendor-models' is {re.escape(status)}: approve the source "
                           r"first \(`lineage source review vendor-models --approve`\)"):
            review_model(rev, "vendor-clf:1", decision="approve")
    finally:
        rev.close()
    assert get_external_model(world, "vendor-clf:1").status == (
        "quarantined" if not decisions else "affected")
