"""Approval gates: what a snapshot must pass before training may read it.

``approve_snapshot`` runs every gate, then records one review holding the full gate report, pass
or fail, and the policy version used. A failed gate leaves the snapshot pending and raises
GateFailedError listing each failed check with its numbers. The gates:

1. coverage: provenance coverage (``lineage.coverage``) >= the policy's ``min_coverage``;
2. sources: no row comes from a quarantined, rejected or revoked source (derived rows count
   for the source of the raw row they derive from);
3. four eyes: the reviewer is neither the snapshot's creator nor the actor of any
   transformation (or version) in its history; and the people under review (that creator and
   those actors) control no part of the gate: none of them chose a setting of the policy in force
   (``lineage.policy.policy_authors``) or created the policy's evaluation snapshot. The
   evaluation snapshot need not be approved (approving it would run the shadow evaluation on
   itself); not being made by the people under review is what keeps it independent of them;
4. shadow evaluation: a reference model (the policy's estimator and seed) trained on the snapshot
   and evaluated on the policy's evaluation snapshot: clean accuracy >= ``min_clean_accuracy`` and
   the worst trigger candidate's baseline-corrected ASR <= ``max_asr`` (see ``lineage.scan``). The
   evaluation snapshot must share rows with the reviewed snapshot: none (it is held out). The
   model trains on, and the calibrated scan reads, a stratified seeded sample of at most
   ``SHADOW_ROWS_PER_CLASS`` (1,000) rows of each class (``lineage.review.evaluation``), so the
   gate's time and memory do not grow with the snapshot.

Setup problems are not gate failures and write nothing: no evaluation snapshot in the policy, an
evaluation snapshot with another schema, or one that was rejected or revoked (BadInputError).
"""

from typing import Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.data.coverage import row_sources, version_coverage
from lineage.data.datasets import LAZY_BLOBS
from lineage.data.sources import STATUS_OF_DECISION
from lineage.errors import BadInputError, GateFailedError, RefusedError
from lineage.review.attestations import attest, signing_key_for
from lineage.review.checkpoints import witness
from lineage.review.evaluation import Evaluation, evaluation_rows
from lineage.review.keys import Trust
from lineage.review.policy import PolicyInfo, policy_authors, policy_in_force
from lineage.review.snapshots import (
    SnapshotInfo,
    find_snapshot,
    history_actors,
    models_on,
    people_under_review,
    read_snapshot_rows,
    snapshot_info,
    snapshot_status,
)
from lineage.review.source_reviews import verified_source_status
from lineage.store.chain import canonical
from lineage.store.engine import Store
from lineage.store.names import identity
from lineage.store.tables import Dataset, Snapshot, SnapshotReview, Source, Version

BLOCKED_STATUSES = ("quarantined", "rejected", "revoked")


def coverage_gate(session: Session, version: Version, policy: PolicyInfo) -> dict:

    report = version_coverage(session, version)
    passed = report.coverage >= policy.min_coverage
    uncovered = report.n_rows - report.n_covered
    reasons = ", ".join(f"{k} {v}" for k, v in report.breakdown.items())
    return {"gate": "coverage", "passed": passed, "coverage": round(report.coverage, 6),
            "min_coverage": policy.min_coverage, "n_rows": report.n_rows,
            "n_covered": report.n_covered, "breakdown": dict(report.breakdown),
            "message": (f"coverage {report.coverage:.4f} >= {policy.min_coverage:g}" if passed else
                        f"coverage {report.coverage:.4f} < {policy.min_coverage:g} ({uncovered} of "
                        f"{report.n_rows} rows uncovered: {reasons})")}


def sources_gate(session: Session, snapshot: Snapshot, ids: np.ndarray,
                 trust: Optional[Trust] = None) -> dict:
    """No row of the snapshot comes from a quarantined, rejected or revoked source. Given the
    ``trust`` file (``approve_snapshot``), a source's status counts only genuine source reviews
    (``verified_source_status``): a review row inserted behind the store's back approves
    nothing."""
    per_ingest = row_sources(session, snapshot.dataset_id, ids)
    by_source: dict = {}
    for entry in per_ingest:
        key = entry["source"]
        agg = by_source.setdefault(key, {"source": key, "status": entry["status"], "rows": 0})
        agg["rows"] += entry["rows"]
    if trust is not None:
        for agg in by_source.values():
            source = session.scalars(select(Source).where(Source.name == agg["source"])).first()
            agg["status"] = verified_source_status(session, source, trust)[0]
    blocked = [s for s in by_source.values() if s["status"] in BLOCKED_STATUSES]
    n_blocked = sum(s["rows"] for s in blocked)
    return {"gate": "sources", "passed": not blocked, "sources": list(by_source.values()),
            "blocked_rows": n_blocked,
            "message": ("no rows from quarantined, rejected or revoked sources" if not blocked else
                        f"{n_blocked} rows from blocked sources: " + ", ".join(
                            f"{s['source']} ({s['status']}, {s['rows']} rows)" for s in blocked))}


def four_eyes_gate(session: Session, snapshot: Snapshot, reviewer: str, *,
                   ids: Optional[np.ndarray] = None, key=None, trust=None,
                   policy: Optional[PolicyInfo] = None,
                   evaluation: Optional[Evaluation] = None) -> dict:
    """The reviewer is none of the people under review (``people_under_review``: creator,
    transformation actors, ingesters), compared as identities and, given the reviewer's ``key``
    and the ``trust`` file, as keys: a key trusted under any of their names may not sign. And
    the people under review control no part of the gate (policy settings, evaluation snapshot)."""
    version = session.get(Version, snapshot.version_id, options=LAZY_BLOBS)
    actors, steps = history_actors(session, version)
    people = people_under_review(session, snapshot, ids)
    me = identity(reviewer)
    problems = []
    if me == identity(snapshot.actor):
        problems.append(f"reviewer {reviewer!r} created the snapshot")
    if me in {identity(a) for a in actors}:
        kinds = sorted({s["kind"] for s in steps if identity(s["actor"]) == me})
        problems.append(f"reviewer {reviewer!r} made transformations in its history "
                        f"({', '.join(kinds) or 'versions'})")
    ingested = [r for r in people.get(me, []) if r.startswith("ingested")]
    if ingested:
        problems.append(f"reviewer {reviewer!r} {'; '.join(ingested)}")
    if key is not None and trust is not None:
        for person in sorted(people):
            if person != me and key.keyid in trust.keyids_of([person]):
                problems.append(f"the reviewer's key {key.keyid[:16]} is also trusted as "
                                f"{person!r}, under review ({'; '.join(people[person])})")
    authors = policy_authors(session, policy, trust) if policy is not None else {}
    for person in sorted({snapshot.actor} | actors):
        chosen = sorted(k for k, a in authors.items() if identity(a) == identity(person))
        if chosen:
            problems.append(f"{person!r}, under review, chose settings of policy version "
                            f"{policy.version} in force ({', '.join(chosen)})")
        if evaluation is not None and evaluation.actor is not None and \
                identity(evaluation.actor) == identity(person):
            problems.append(f"{person!r}, under review, created the evaluation snapshot "
                            f"{evaluation.name!r}")
    return {"gate": "four_eyes", "passed": not problems, "reviewer": reviewer,
            "reviewer_keyid": key.keyid if key is not None else None,
            "creator": snapshot.actor, "history_actors": sorted(actors),
            "under_review": {p: people[p] for p in sorted(people)},
            "policy_authors": authors,
            "evaluation_creator": evaluation.actor if evaluation is not None else None,
            "message": "; ".join(problems) if problems else
            f"reviewer {reviewer!r} is neither the creator, a transformation actor nor an "
            "ingester; the people under review set no policy setting in force and did not create "
            "the evaluation snapshot"}


def _shadow_gate(X, y, ids, evaluation: Evaluation, policy: PolicyInfo) -> dict:
    """The shadow evaluation gate (``lineage.review.evaluation.shadow_gate``): a model trained
    on the snapshot measured on the evaluation snapshot, and the calibrated scan of the
    snapshot's rows, with the triggers it finds measured per source class -> target class."""
    from lineage.review.evaluation import shadow_gate  # only this function is the gate's

    return shadow_gate(X, y, ids, evaluation, policy)


def approve_snapshot(store: Store, name: str, *, reason: Optional[str] = None) -> SnapshotInfo:
    """Run every gate on a pending snapshot as the store's actor and record the review.

    Returns the approved snapshot; raises GateFailedError (the failed review is recorded, the
    snapshot stays pending), RefusedError when the snapshot is not pending (nothing recorded),
    BadInputError for a policy that cannot be applied (nothing recorded).
    Example: ``approve_snapshot(open_store(actor="reviewer"), "digits-train-2026w48")``
    """
    reviewer = store.actor
    key, trust = signing_key_for(store)  # before any work: a review that cannot be signed fails
    with store.read() as session:
        snapshot = find_snapshot(session, name)
        status = snapshot_status(session, snapshot)
        if status != "pending":
            raise RefusedError(f"snapshot {name!r} is {status}: only a pending snapshot can be "
                               "approved" + (" (create a new snapshot)" if status != "approved" else ""))
        policy = policy_in_force(session, trust)
        dataset = session.get(Dataset, snapshot.dataset_id)
        evaluation = evaluation_rows(session, policy, dataset, f"snapshot {name!r}")
        ids, X, y = read_snapshot_rows(session, snapshot)
        version = session.get(Version, snapshot.version_id, options=LAZY_BLOBS)
        digests = {"content_digest": snapshot.content_digest,
                   "manifest_digest": snapshot.manifest_digest,
                   # The dataset's dtype and feature count say how the blobs read: signed, so
                   # a load checks the record without walking the chain (read_snapshot_rows).
                   "dataset_digest": dataset.record_digest}
        gates = [coverage_gate(session, version, policy), sources_gate(session, snapshot, ids, trust),
                 four_eyes_gate(session, snapshot, reviewer, ids=ids, key=key, trust=trust,
                                policy=policy, evaluation=evaluation)]
    gates.append(_shadow_gate(X, y, ids, evaluation, policy))
    passed = all(g["passed"] for g in gates)
    report = {"snapshot": name, "reviewer": reviewer, "passed": passed,
              "policy_version": policy.version, "policy": policy.settings(),
              **digests, "gates": gates}
    with store.write() as tx:
        snap = find_snapshot(tx.session, name)
        status = snapshot_status(tx.session, snap)
        if status != "pending":  # someone else decided while the gates ran
            raise RefusedError(f"snapshot {name!r} became {status} while its gates ran")
        review = tx.add(SnapshotReview(snapshot_id=snap.id, decision="approve", passed=passed,
                                       reason=reason, policy_id=policy.version or None,
                                       content_digest=snap.content_digest, report=canonical(report)))
        attest(tx, key, review, subject=f"snapshot:{name}", digest=snap.content_digest,
               predicate={"decision": "approve", "passed": passed, "snapshot": name,
                          "manifest_digest": snap.manifest_digest,
                          "dataset_digest": digests["dataset_digest"], "reason": reason,
                          "policy_version": policy.version, "report": report})
        failed = [g for g in gates if not g["passed"]]
        tx.event("snapshot.approve" if passed else "snapshot.approve-failed",
                 f"snapshot {name} " + ("approved" if passed else
                                        "not approved: " + "; ".join(g["message"] for g in failed)),
                 snapshot=name, review=review.id, passed=passed, policy_version=policy.version,
                 failed_gates=[g["gate"] for g in failed])
        info = snapshot_info(tx.session, snap, detail=True)
    witness(store)
    if not passed:
        raise GateFailedError(
            f"snapshot {name!r} not approved ({len(failed)} of {len(gates)} gates failed; review "
            f"{review.id} recorded, policy version {policy.version}): "
            + "; ".join(f"{g['gate']}: {g['message']}" for g in failed))
    return info


def decide_snapshot(store: Store, name: str, decision: str, reason: Optional[str]) -> SnapshotInfo:
    if not (reason or "").strip():
        raise BadInputError(f"--reason is required to {decision} a snapshot")
    key, _ = signing_key_for(store)
    with store.write() as tx:
        session = tx.session
        snapshot = find_snapshot(session, name)
        status = snapshot_status(session, snapshot)
        allowed = {"reject": "pending", "revoke": "approved"}[decision]
        if status != allowed:
            hint = ("only an approved snapshot can be revoked" if decision == "revoke"
                    else "only a pending snapshot can be rejected"
                    + ("; revoke an approved one" if status == "approved" else ""))
            raise RefusedError(f"snapshot {name!r} is {status}: {hint}")
        affected = models_on(session, snapshot)
        report = {"content_digest": snapshot.content_digest,
                  "manifest_digest": snapshot.manifest_digest}
        if decision == "revoke":
            report["affected_models"] = affected

        policy = policy_in_force(session)
        review = tx.add(SnapshotReview(snapshot_id=snapshot.id, decision=decision, passed=True,
                                       reason=reason, policy_id=policy.version or None,
                                       content_digest=snapshot.content_digest,
                                       report=canonical(report)))
        attest(tx, key, review, subject=f"snapshot:{name}", digest=snapshot.content_digest,
               predicate={"decision": decision, "passed": True, "snapshot": name,
                          "manifest_digest": snapshot.manifest_digest, "reason": reason,
                          "policy_version": policy.version, "report": report})
        tx.event(f"snapshot.{decision}", f"snapshot {name} {STATUS_OF_DECISION[decision]}"
                 + (f"; model versions affected: {', '.join(affected)}" if decision == "revoke"
                    and affected else ""), snapshot=name, reason=reason,
                 **({"affected_models": affected} if decision == "revoke" else {}))
        info = snapshot_info(session, snapshot, detail=True)
    witness(store)
    return info


def reject_snapshot(store: Store, name: str, *, reason: str) -> SnapshotInfo:
    """Reject a pending snapshot (final: a new snapshot must be made).

    Example: ``reject_snapshot(store, "digits-train-2026w48", reason="labels unchecked")``
    """
    return decide_snapshot(store, name, "reject", reason)


def revoke_snapshot(store: Store, name: str, *, reason: str) -> SnapshotInfo:
    """Revoke an approved snapshot: it can no longer be loaded, and every model version trained
    on it becomes affected (``models`` of the result lists them).

    Example: ``revoke_snapshot(store, "digits-train-2026w48", reason="poisoned rows found")``
    """
    return decide_snapshot(store, name, "revoke", reason)
