"""``lineage demo``: the whole story recorded in a store through the public functions a user
calls: both poisoning scenarios, refused approvals, the red-team sandbox, audits and lessons."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from sqlalchemy import func, select

from lineage.data.coverage import get_coverage
from lineage.data.ingest import ingest_arrays, ingest_digits
from lineage.data.sources import add_source, get_source
from lineage.data.transforms import append_ingest, inject_trigger, split_version
from lineage.data.versions import list_versions, version_members
from lineage.errors import BadInputError, GateFailedError, NotFoundError
from lineage.lab.audit import audit_poisoned, audit_sources, scan_version
from lineage.lab.experiment import IMAGE_SHAPE, SCENARIO_2_RATE, LabRow, LabSettings, check_settings
from lineage.models.registry import load_model
from lineage.models.training import train
from lineage.poison.detectors import trigger_visibility
from lineage.poison.metrics import attack_success_rate, clean_accuracy, detection
from lineage.poison.triggers import stamp
from lineage.review.gates import approve_snapshot, revoke_snapshot
from lineage.review.keys import create_key, key_path, read_trust, trust_key
from lineage.review.policy import set_policy
from lineage.review.snapshots import create_snapshot
from lineage.review.source_reviews import review_source
from lineage.store.engine import open_store
from lineage.store.tables import Attestation, Event

# The demo's own store, in the working folder: it never writes into the user's store (nor reads
# LINEAGE_DB), so its rows, reviews and policies never mix with the user's.
DEMO_DB = "sqlite:///lineage-demo.db"
# (what the demo is doing, steps done, steps in all)
StepProgress = Optional[Callable[[str, int, int], None]]

ACTORS = {"engineer": "data-engineer", "red_team": "red-team", "reviewer": "reviewer",
          "lab": "poison-lab"}


@dataclass(frozen=True)
class DemoReport:
    """What ``run_demo`` did and found."""

    tag: str
    db: str
    settings: LabSettings
    quick: bool
    rows: list  # LabRow, scenario 1 by rate, then scenario 2
    lessons: list  # plain lines
    scenario_1_audit: dict = field(default_factory=dict)
    scenario_2_audit: dict = field(default_factory=dict)
    seconds: float = 0.0


def _next_tag(store) -> str:

    used = {v.name.split("-")[0] for v in list_versions(store) if v.name}
    n = 1
    while f"demo{n}" in used:
        n += 1
    return f"demo{n}"


def _attempt_approval(store, name: str) -> tuple[str, str]:

    try:
        approve_snapshot(store, name, reason="production approval")
        return "approved", "all gates passed"
    except GateFailedError as exc:
        return "refused", str(exc)


def _store_row(stores, settings: LabSettings, *, scenario: int, rate: float, snapshot: str,
               version: int, poisoned_ids, gate: str, gate_message: str, model_info,
               X_test, y_test) -> LabRow:

    lab = stores["lab"]
    members = version_members(lab, version)
    poisoned = np.isin(members.row_ids, np.asarray(poisoned_ids, dtype=np.int64))
    model = load_model(lab, model_info.ref)
    record = scan_version(lab, snapshot, seed=settings.seed)
    flagged_by = {name: set() for name in record.detectors}
    for r in record.flagged + record.noted:
        for d in r.detectors:
            flagged_by[d].add(r.row_id)
    det = {name: detection(np.isin(members.row_ids, list(ids)), poisoned)
           for name, ids in flagged_by.items()}
    det["combined"] = detection(np.isin(members.row_ids, [r.row_id for r in record.flagged]),
                                poisoned)
    metrics = model_info.metrics
    return LabRow(
        scenario=scenario, source_fraction=rate, poison_rate=float(poisoned.mean()),
        poisoned_rows=int(poisoned.sum()), training_rows=len(members.row_ids),
        clean_accuracy=clean_accuracy(model, X_test, y_test),
        trigger_attack_success_rate=attack_success_rate(
            model, X_test, y_test, trigger=settings.trigger, source_class=settings.source_class,
            target_class=settings.target_class, image_shape=IMAGE_SHAPE),
        trigger_visibility=(trigger_visibility(members.X, members.y, poisoned,
                                               image_shape=IMAGE_SHAPE) if poisoned.any() else None),
        detection=det, provenance_coverage=round(get_coverage(lab, version).coverage, 6),
        gate=gate, gate_message=gate_message,
        worst_scanned_trigger=metrics.get("worst_trigger"),
        worst_scanned_asr=metrics.get("worst_asr"), snapshot=snapshot, model=model_info.ref,
        scan_event=record.event_id)


def demo_identities(folder: Path) -> tuple[Path, Path]:
    """The demo's own keys and trust file, in ``folder`` (made on first use, kept after): a key
    per demo actor under ``keys/`` and ``lineage-trust.json`` trusting them. The demo never
    touches the user's keys or trust file."""
    keys, trust = folder / "keys", folder / "lineage-trust.json"
    for actor in ACTORS.values():
        path = key_path(actor, keys)
        if not path.exists():
            create_key(actor, path=path)
        trust_key(actor, trust=str(trust), public_key=path)
    return keys, trust


def demo_folder(db: Optional[str]) -> Path:
    """``lineage-demo/`` beside the demo's SQLite store (``db``, default ``DEMO_DB``), else in
    the working directory."""
    url = db or DEMO_DB
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).resolve().parent / "lineage-demo"
    return Path.cwd() / "lineage-demo"


def check_demo_store(db: str, trust) -> None:
    """The demo writes only into a store that is empty or its own: one whose every signed
    statement is by a key of the demo's trust file (a demo run signs from its first write on).
    Anything else is a user's store, which the demo must not touch (BadInputError)."""
    try:
        store = open_store(db, create=False)
    except NotFoundError:
        return  # no store yet: the demo makes its own
    try:
        with store.read() as session:
            events = session.scalar(select(func.count()).select_from(Event))
            keyids = set(session.scalars(select(Attestation.keyid).distinct()))
    finally:
        store.close()
    if events and (not keyids or any(trust.by_keyid(k) is None for k in keyids)):
        raise BadInputError(f"{db} holds a store the demo did not make: the demo writes only "
                            f"into an empty store or its own (default {DEMO_DB}); give it "
                            "another --db")


def demo_steps(settings: LabSettings, quick: bool) -> int:
    """How many steps ``run_demo`` reports to its ``progress``."""
    rates = settings.rates
    poisoned = sum(1 for r in rates if r > 0)
    runs = len(rates) + (0 if quick else 1)
    return (1 + len(rates) + poisoned + (0 if quick else 2) + 1 + runs
            + (1 if poisoned else 0) + (0 if quick else 1))


def run_demo(db: Optional[str] = None, settings: LabSettings = LabSettings(), *,
             quick: bool = False, progress: StepProgress = None,
             folder: Optional[str | Path] = None) -> DemoReport:
    """The poisoning lab through the store's public functions, every step in the lineage, in
    the demo's own store (``db``, default ``DEMO_DB``: never the user's store).

    Ingest scikit-learn digits (source sklearn-digits, reviewed), split (seeded), freeze the
    held-out side as the policy's evaluation snapshot; then per rate (scenario 1) an
    inject-trigger transformation by ``red-team`` (a compromised preprocessing step), a snapshot,
    an approval attempt through the gates by ``reviewer``. Refused snapshots are then approved
    under a recorded red-team sandbox policy (``max_asr`` 1.0) so the lab can train on them and
    measure the attack; the production policy is restored and every poisoned snapshot revoked
    (also one the gate let through). Every
    snapshot is trained on, scanned (recorded) and measured. Unless ``quick``, scenario 2 follows:
    half of the training pool is set aside, a crowdsourced source delivers it as a batch with
    triggered, relabelled rows and no record of it, the batch is appended, snapshotted, refused,
    scanned, trained on in the sandbox, and ``audit_sources`` names the source. Names are
    prefixed with a fresh tag (``demo1``, ``demo2`` ...), so a store can hold several runs.
    Reviews are signed with the demo's own keys (``demo_identities`` in ``folder``, default
    ``demo_folder(db)``). ``progress(message, done, total)`` is called as each step starts.
    """
    import time

    settings = check_settings(settings)
    db = db or DEMO_DB
    total, done = demo_steps(settings, quick), [0]

    def say(message: str) -> None:
        if progress:
            progress(message, min(done[0], total), total)
        done[0] += 1

    started = time.perf_counter()
    stores = {}
    try:
        keys, trust = demo_identities(Path(folder) if folder else demo_folder(db))
        check_demo_store(db, read_trust(str(trust)))
        for role, actor in ACTORS.items():
            stores[role] = open_store(db, actor=actor, trust=str(trust), keys=str(keys))
        eng, red, rev, lab = (stores[k] for k in ("engineer", "red_team", "reviewer", "lab"))
        tag = _next_tag(eng)
        trig = settings.trigger
        say("ingest scikit-learn digits")
        info = ingest_digits(eng)
        if get_source(eng, info.source).status != "approved":
            review_source(rev, info.source, decision="approve",
                          reason="scikit-learn's bundled digits, BSD-3-Clause, checked")
        split = split_version(eng, version=info.version_id, test_size=settings.test_size,
                              seed=settings.seed, name=f"{tag}-digits",
                              reason="hold out a test split for evaluation")
        # The reviewer freezes the held-out split: four eyes keeps the evaluation snapshot out of
        # the hands of those whose snapshots it judges.
        create_snapshot(rev, f"{tag}-eval", version=split.test_version_id)
        production = set_policy(rev, evaluation_snapshot=f"{tag}-eval",
                                reason=f"{tag}: evaluate on the held-out split")
        test = version_members(eng, split.test_version_id)
        X_test, y_test = test.X.astype(np.float64), test.y

        # (scenario, rate, snapshot, version, poisoned ids, gate, message)
        runs = []
        for rate in settings.rates:
            name = f"{tag}-s1-r{rate:g}"
            version, poisoned_ids = split.train_version_id, ()
            if rate > 0:
                say(f"scenario 1, rate {rate:g}: inject-trigger (compromised preprocessing step)")
                res = inject_trigger(red, version=split.train_version_id,
                                     source_class=settings.source_class,
                                     target_class=settings.target_class, rate=rate, size=trig.size,
                                     position=(trig.row, trig.col), value=trig.value,
                                     seed=settings.seed, name=name,
                                     reason="preprocessing step normalize-v2 (compromised)")
                version, poisoned_ids = res.version_id, res.poisoned_row_ids
            create_snapshot(eng, name, version=version)
            say(f"scenario 1, rate {rate:g}: approval attempt through the gates")
            gate, message = _attempt_approval(rev, name)
            runs.append((1, rate, name, version, poisoned_ids, gate, message))

        s2 = None
        if not quick:
            say("scenario 2: a crowdsourced batch arrives already poisoned")
            pool = split_version(eng, version=split.train_version_id, test_size=0.5,
                                 seed=settings.seed, name=f"{tag}-pool",
                                 reason="half the training pool goes out for crowd labelling")
            kept = version_members(eng, pool.train_version_id)
            batch = version_members(eng, pool.test_version_id)
            n_source = int((kept.y == settings.source_class).sum()
                           + (batch.y == settings.source_class).sum())
            fraction = SCENARIO_2_RATE
            src_pos = np.flatnonzero(batch.y == settings.source_class)
            n_poison = min(len(src_pos), max(1, int(round(fraction * n_source))))
            chosen = np.sort(np.random.default_rng(settings.seed).choice(src_pos, n_poison,
                                                                         replace=False))
            Xb, yb = batch.X.copy(), batch.y.copy()
            Xb[chosen] = stamp(Xb[chosen], trig, IMAGE_SHAPE).astype(Xb.dtype)
            yb[chosen] = settings.target_class
            crowd = f"{tag}-crowd-batch-7"
            add_source(eng, crowd, kind="crowdsourced", uri="https://crowd.example/batches/7",
                       license="CC-BY-4.0", owner="Acme Labelling Ltd")
            review_source(rev, crowd, decision="approve", reason="vendor contract and license checked")
            ingest = ingest_arrays(eng, Xb, yb, source=crowd, dataset=info.dataset,
                                   file_name="crowd-batch-7.npz")
            appended = append_ingest(eng, version=pool.train_version_id, ingest=ingest.id,
                                     name=f"{tag}-s2", reason="crowd batch 7 delivered")
            name = f"{tag}-s2-crowd"
            create_snapshot(eng, name, version=appended.version_id)
            say("scenario 2: approval attempt through the gates")
            gate, message = _attempt_approval(rev, name)
            poisoned_ids = tuple(int(ingest.first_row_id + i) for i in chosen)
            s2 = (2, round(n_poison / n_source, 4), name, appended.version_id, poisoned_ids, gate,
                  message)
            runs.append(s2)

        refused = [r for r in runs if r[5] == "refused"]
        if refused:
            say("red-team sandbox: approve the refused snapshots")
            set_policy(rev, max_asr=1.0, reason=f"{tag}: red-team sandbox, train on refused "
                       "snapshots only to measure the attack")
            try:
                for r in refused:
                    approve_snapshot(rev, r[2], reason="red-team sandbox (max_asr 1.0)")
            finally:
                set_policy(rev, max_asr=production.max_asr,
                           reason=f"{tag}: sandbox over, production thresholds back")
        else:
            done[0] += 1  # no sandbox step
        rows, models = [], {}
        for r in runs:
            scenario, rate, name, version, poisoned_ids, gate, message = r
            say(f"{name}: train, scan, measure")
            models[name] = train(lab, snapshot=name, model=f"{tag}-clf", estimator=settings.estimator,
                                 seed=settings.seed)
            rows.append(_store_row(stores, settings, scenario=scenario, rate=rate, snapshot=name,
                                   version=version, poisoned_ids=poisoned_ids, gate=gate,
                                   gate_message=message, model_info=models[name],
                                   X_test=X_test, y_test=y_test))
        for r in runs:
            if r[5] == "refused":
                revoke_snapshot(rev, r[2], reason="poisoned: refused by the production gate, "
                                "approved only in the red-team sandbox")
            elif r[4]:  # poisoned, yet the gate let it through: the red team knows better
                revoke_snapshot(rev, r[2], reason=f"poisoned by the red-team exercise ({len(r[4])} "
                                "rows); the production gate missed it")

        audit1 = {}
        poisoned_runs = [r for r in runs if r[0] == 1 and r[1] > 0]
        if poisoned_runs:
            worst = poisoned_runs[-1]
            say(f"scenario 1: audit poisoned {models[worst[2]].ref}")
            audit = audit_poisoned(lab, models[worst[2]].ref, scan=False)
            truth = set(worst[4])
            listed = set(audit.from_records)
            audit1 = {"model": audit.model, "snapshot": audit.snapshot, "listed": len(listed),
                      "poisoned": len(truth),
                      "precision": len(listed & truth) / len(listed) if listed else None,
                      "recall": len(listed & truth) / len(truth) if truth else None}
        audit2 = {}
        if s2 is not None:
            say("scenario 2: audit sources (retrain without each source)")
            sources = audit_sources(lab, f"v{s2[3]}")
            audit2 = {"version": f"v{s2[3]}", "worst_trigger": sources.worst_trigger,
                      "worst_asr": sources.worst_asr,
                      "suspects": [f.source for f in sources.sources if f.suspect],
                      "sources": [{"source": f.source, "rows": f.rows,
                                   "trigger_asr_without": f.trigger_asr_without,
                                   "suspect": f.suspect} for f in sources.sources],
                      "crowd_source": crowd, "event": sources.event_id}
        if progress:
            progress("done", total, total)
        report = DemoReport(tag=tag, db=eng.url, settings=settings, quick=quick, rows=rows,
                            lessons=[], scenario_1_audit=audit1, scenario_2_audit=audit2,
                            seconds=0.0)
        return replace(report, lessons=lessons(report),
                       seconds=round(time.perf_counter() - started, 2))
    finally:
        for s in stores.values():
            s.close()


def lessons(report: DemoReport) -> list[str]:
    """The demo's lesson in plain sentences, from its measured rows (one paragraph each; the
    command line wraps them to the terminal)."""
    s = report.settings
    out = []
    s1 = sorted((r for r in report.rows if r.scenario == 1), key=lambda r: r.source_fraction)
    base = next((r for r in s1 if r.poisoned_rows == 0), None)
    poisoned = [r for r in s1 if r.poisoned_rows > 0]
    if poisoned:
        top = max(poisoned, key=lambda r: r.trigger_attack_success_rate)
        lo, hi = min(r.clean_accuracy for r in poisoned), max(r.clean_accuracy for r in poisoned)
        accuracy = f"stays at {lo:.3f}" if f"{lo:.3f}" == f"{hi:.3f}" else (
            f"stays between {lo:.3f} and {hi:.3f}")
        out.append(
            f"Clean accuracy {accuracy}"
            + (f" (unpoisoned {base.clean_accuracy:.3f})" if base else "")
            + f" while the attack success rate of the {s.trigger.describe()} trigger "
            f"({s.source_class} -> {s.target_class}) "
            + (f"climbs from {base.trigger_attack_success_rate:.2f} unpoisoned to "
               if base else "reaches ")
            + f"{top.trigger_attack_success_rate:.2f} with {top.poisoned_rows} poisoned rows "
            f"({top.poison_rate:.1%} of the training rows): clean accuracy alone never shows it.")
        gated = [r for r in report.rows if r.poisoned_rows > 0]
        refused = [r for r in gated if r.gate == "refused"]
        line = (f"The approval gate refused {len(refused)} of {len(gated)} poisoned snapshots "
                "(its shadow evaluation's trigger scan found the patch without being told where)")
        passed = [r for r in gated if r.gate != "refused"]
        if passed:
            line += "; it let through " + ", ".join(
                f"{r.snapshot} ({r.poisoned_rows} poisoned rows; revoked afterwards)" for r in passed)
        if base is not None:
            line += f"; the unpoisoned snapshot was {base.gate}"
        out.append(line + ".")
    if report.scenario_1_audit:
        a = report.scenario_1_audit
        out.append(f"Scenario 1 (poisoned inside the pipeline): the records name the rows. "
                   f"`lineage audit poisoned --model {a['model']}` lists {a['listed']} rows of "
                   f"{a['poisoned']} poisoned: precision {a['precision']}, recall {a['recall']}.")
    s2 = [r for r in report.rows if r.scenario == 2]
    if s2 and report.scenario_2_audit:
        r, a = s2[0], report.scenario_2_audit
        c = r.detection.get("combined")
        suspects = ", ".join(str(x) for x in a["suspects"]) or "no source"
        without = next((x["trigger_asr_without"] for x in a["sources"]
                        if x["source"] == a["crowd_source"]), None)
        out.append(
            f"Scenario 2 (poisoned upstream, no record of it): the records cannot say which "
            f"rows; the detectors flagged {c.n_flagged if c else 0} rows (precision "
            f"{_fmt_opt(c.precision if c else None)}, recall {_fmt_opt(c.recall if c else None)}) "
            f"and `lineage audit sources --version {a['version']}` blames {suspects}: without "
            f"{a['crowd_source']} the ASR of {a['worst_trigger']} falls from {a['worst_asr']:.2f} "
            f"to {_fmt_opt(without)}.")
    covs = sorted({r.provenance_coverage for r in report.rows if r.provenance_coverage is not None})
    if covs and poisoned:
        out.append(f"Provenance coverage was {', '.join(f'{c:g}' for c in covs)} on the poisoned "
                   "snapshots: coverage shows the history is recorded, not that it is benign; "
                   "the gates and the detectors do that part.")
    return out


def _fmt_opt(v) -> str:
    return "-" if v is None else f"{v:.2f}"
