"""Review policy as versioned records: thresholds, the evaluation snapshot, scan settings.

The newest ``policies`` record is in force; with none, ``DEFAULTS`` apply as version 0. Setting a
policy appends a new version that starts from the one in force; every review records the version
it used, so a gate report can always be read against the thresholds that produced it.

``max_asr`` bounds the *baseline-corrected* attack success rate of the worst trigger candidate
(see ``lineage.scan``): the share of non-target evaluation rows a candidate flips to one class on
the reviewed model, minus the share it flips on reference models trained on the evaluation rows.
Calibrated on scikit-learn digits (3 stratified 2/3-1/3 splits, logistic reference): a clean
model's worst corrected rate was 0.17-0.21 (a natural 3x3 blob); the reference experiment's
trigger (2x2 lower-right at 16, class 1 -> 7) was always the worst candidate, scoring 0.36-0.50
with 10% of class-1 training rows poisoned, 0.45-0.60 with 20%, and 0.23-0.39 with 5% (so 5% is
not reliably caught at the default 0.3).
"""

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Optional, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.data.datasets import check_seed
from lineage.errors import BadInputError, IntegrityError, LineageError, NotFoundError
from lineage.poison.estimators import ESTIMATORS
from lineage.poison.triggers import parse_image_geometry
from lineage.review.attestations import (
    attest,
    attestation_of,
    signing_key_for,
    verified_attestation,
)
from lineage.review.keys import Trust
from lineage.store.chain import canonical
from lineage.store.engine import Store
from lineage.store.log import anchor_records, check_listed_present
from lineage.store.tables import Attestation, Dataset, Policy, Snapshot


@dataclass(frozen=True)
class PolicyInfo:
    """One policy version (0: the built-in defaults, never stored)."""

    version: int
    min_coverage: float = 1.0
    max_asr: float = 0.3
    min_clean_accuracy: float = 0.9
    evaluation_snapshot: Optional[str] = None
    scan_sizes: tuple[int, ...] = (1, 2, 3)
    reference_estimator: str = "logistic"
    seed: int = 0
    actor: Optional[str] = None
    created_at: Optional[datetime] = None
    reason: Optional[str] = None

    def settings(self) -> dict:
        return {"min_coverage": self.min_coverage, "max_asr": self.max_asr,
                "min_clean_accuracy": self.min_clean_accuracy,
                "evaluation_snapshot": self.evaluation_snapshot,
                "scan_sizes": list(self.scan_sizes),
                "reference_estimator": self.reference_estimator, "seed": self.seed}


DEFAULTS = PolicyInfo(version=0)


def _info(record: Policy) -> PolicyInfo:
    s = json.loads(record.settings)
    return PolicyInfo(version=record.id, min_coverage=s["min_coverage"], max_asr=s["max_asr"],
                      min_clean_accuracy=s["min_clean_accuracy"],
                      evaluation_snapshot=s["evaluation_snapshot"],
                      scan_sizes=tuple(s["scan_sizes"]), reference_estimator=s["reference_estimator"],
                      seed=s["seed"], actor=record.actor, created_at=record.created_at,
                      reason=record.reason)


def policy_digest(record: Policy) -> str:
    """What a policy version's signature binds: its settings as stored."""
    return hashlib.sha256(record.settings.encode("utf-8")).hexdigest()


def genuine_policy(session: Session, record: Policy, trust: Trust) -> bool:
    """A policy version the gates may hold snapshots and models to: recorded in the event chain
    and signed by a trusted key about these settings, or unsigned but recorded before the store
    signed anything (a version an earlier lineage set, in an upgraded store). One inserted behind
    the store's back, or set by nobody trusted, is not (``lineage verify`` names it)."""
    try:
        event_id = anchor_records(session, [record], kinds=("policy.set",))[("policies", record.id)]
    except IntegrityError:
        return False
    if attestation_of(session, record) is None:
        first = session.scalars(select(Attestation).order_by(Attestation.id).limit(1)).first()
        if first is None:
            return True
        try:
            first_event = anchor_records(session, [first])[("attestations", first.id)]
        except IntegrityError:
            return False
        return event_id < first_event
    try:
        signed = verified_attestation(session, record, trust, what=f"policy version {record.id}")
    except LineageError:
        return False
    return signed.digest == policy_digest(record) and signed.predicate.get("policy") == record.id


def policy_in_force(session: Session, trust: Optional[Trust] = None) -> PolicyInfo:
    """The newest policy version, or the defaults (version 0). Given the ``trust`` file (every
    gate), the newest version must be genuine (``genuine_policy``) and every version the chain
    recorded still stored: otherwise IntegrityError, failing closed rather than falling back to
    an older, perhaps laxer, version (a broken signature or a deleted row would roll the gates
    back). Setting the policy again with a trusted key (``set_policy``) is the way out."""
    record = session.scalars(select(Policy).order_by(Policy.id.desc()).limit(1)).first()
    if trust is None:
        return DEFAULTS if record is None else _info(record)
    check_listed_present(session, Policy, kinds=("policy.set",), what="the policy")
    if record is None:
        return DEFAULTS
    if not genuine_policy(session, record, trust):
        raise IntegrityError(
            f"policy version {record.id} (the newest) is not one a trusted key signed and the "
            f"event chain records: no gate decides by it or by an older one; set the policy "
            f"again (`lineage policy set ... --reason`) as a signer in {trust.path}, and run "
            "`lineage verify`")
    return _info(record)


def _newest_genuine(session: Session, trust: Trust) -> PolicyInfo:
    """The newest genuine version (or the defaults): what ``set_policy`` starts from, so a
    forged newest version lends none of its settings to the one that replaces it."""
    for record in session.scalars(select(Policy).order_by(Policy.id.desc())):
        if genuine_policy(session, record, trust):
            return _info(record)
    return DEFAULTS


def policy_version(session: Session, version: Optional[int]) -> PolicyInfo:
    if not version:
        return DEFAULTS
    record = session.get(Policy, version)
    if record is None:
        raise NotFoundError(f"no policy version {version} (see `lineage policy show --all`)")
    return _info(record)


def policy_authors(session: Session, policy: PolicyInfo,
                   trust: Optional[Trust] = None) -> dict[str, str]:
    """Who chose each setting of ``policy``: setting -> actor of the newest version (up to
    ``policy``) that changed it (settings never changed keep the defaults and have no author). Inherited settings count for the person
    who chose them, not for whoever appended a later version on top."""
    authors: dict[str, str] = {}
    previous = DEFAULTS.settings()
    if not policy.version:
        return authors
    for record in session.scalars(select(Policy).where(Policy.id <= policy.version).order_by(Policy.id)):
        if trust is not None and not genuine_policy(session, record, trust):
            continue  # not a version the gates count, so nobody chose its settings
        settings = _info(record).settings()
        for key, value in settings.items():
            if value != previous.get(key):
                authors[key] = record.actor
        previous = settings
    return authors


def get_policy(store: Store, version: Optional[int] = None, *,
               trust: Optional[Trust] = None) -> PolicyInfo:
    """The policy in force, or the given version (0: the defaults). Given the ``trust`` file,
    in force as the gates see it (``policy_in_force``: IntegrityError when its newest version
    is not genuine)."""
    with store.read() as session:
        if version is None:
            return policy_in_force(session, trust)
        return policy_version(session, version)


def list_policies(store: Store) -> list[PolicyInfo]:
    """Every stored policy version, oldest first (the defaults are version 0, not listed)."""
    with store.read() as session:
        return [_info(p) for p in session.scalars(select(Policy).order_by(Policy.id))]


def _fraction(name: str, value: Optional[float]) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise BadInputError(f"--{name.replace('_', '-')} {value:g}: give a fraction between 0 and 1")


def _check_scan_sizes(session: Session, policy: PolicyInfo) -> None:
    """Every trigger-scan patch size fits the evaluation snapshot's images: a patch larger than
    the image stamps nothing, so a policy of only such sizes would switch the ASR gate off."""
    if not policy.evaluation_snapshot:
        return
    snap = session.scalars(select(Snapshot).where(
        Snapshot.name == policy.evaluation_snapshot)).first()
    dataset = session.get(Dataset, snap.dataset_id) if snap is not None else None
    if dataset is None:
        return
    if not dataset.image_shape:  # a strip (scan_geometry): single features, the 1s of the sizes
        if 1 not in policy.scan_sizes:
            raise BadInputError(
                f"--scan-sizes {','.join(map(str, policy.scan_sizes))}: the rows of evaluation "
                f"snapshot {snap.name!r} are not images, so the scan sets one feature at a time: "
                "include size 1")
        return
    h, w, _ = parse_image_geometry(dataset.image_shape)
    too_big = [s for s in policy.scan_sizes if s > min(h, w)]
    if too_big:
        raise BadInputError(
            f"--scan-sizes {','.join(map(str, too_big))}: larger than the {dataset.image_shape} "
            f"images of evaluation snapshot {snap.name!r} (at most {min(h, w)})")


def set_policy(store: Store, *, evaluation_snapshot: Optional[str] = None,
               min_coverage: Optional[float] = None, max_asr: Optional[float] = None,
               min_clean_accuracy: Optional[float] = None,
               scan_sizes: Optional[Sequence[int]] = None,
               reference_estimator: Optional[str] = None, seed: Optional[int] = None,
               reason: Optional[str] = None) -> PolicyInfo:
    """Append a policy version: the one in force with the given settings changed.

    ``reason`` is required: the policy is what the gates hold a snapshot to, so every change is
    explained. The evaluation snapshot must exist; it need not be approved (it is held-out data
    for evaluation, never training data), but it is read frozen and digest-verified at every use.
    The approval gate's four-eyes check refuses a snapshot whose creator or transformation actors
    set a setting of the policy in force or created its evaluation snapshot (``lineage.gates``).
    The version is signed with the actor's trusted key (RefusedError or NotFoundError without
    one, nothing written): every gate holds snapshots and models to the newest version a trusted
    key signed (``policy_in_force`` with the trust file), so one appended behind the store's back
    changes no threshold.
    Example: ``set_policy(store, evaluation_snapshot="digits-eval", max_asr=0.25, reason="...")``
    """
    for name, value in (("min_coverage", min_coverage), ("max_asr", max_asr),
                        ("min_clean_accuracy", min_clean_accuracy)):
        _fraction(name, value)
    seed = None if seed is None else check_seed(seed)
    if scan_sizes is not None:
        scan_sizes = tuple(int(s) for s in scan_sizes)
        if not scan_sizes or any(s < 1 for s in scan_sizes):
            raise BadInputError("--scan-sizes: give patch sizes of at least 1, e.g. 1,2,3")
        scan_sizes = tuple(sorted(set(scan_sizes)))
    if reference_estimator is not None and reference_estimator not in ESTIMATORS:
        raise BadInputError(f"--reference-estimator {reference_estimator!r}: use one of "
                            f"{', '.join(ESTIMATORS)}")
    changes = {k: v for k, v in dict(
        evaluation_snapshot=evaluation_snapshot, min_coverage=min_coverage, max_asr=max_asr,
        min_clean_accuracy=min_clean_accuracy, scan_sizes=scan_sizes,
        reference_estimator=reference_estimator, seed=seed).items() if v is not None}
    if not changes:
        raise BadInputError("nothing to set: give at least one setting (see `lineage policy set --help`)")
    if not (reason or "").strip():
        raise BadInputError("--reason is required to set the policy: say why the thresholds change")
    key, trust = signing_key_for(store)  # the gates count only versions a trusted key signed
    with store.write() as tx:
        if evaluation_snapshot is not None:
            found = tx.session.scalars(select(Snapshot.id).where(
                Snapshot.name == evaluation_snapshot)).first()
            if found is None:
                raise NotFoundError(f"no snapshot named {evaluation_snapshot!r} to evaluate on "
                                    "(create it with `lineage snapshot create`)")
        current = _newest_genuine(tx.session, trust)
        new = replace(current, **changes)
        _check_scan_sizes(tx.session, new)
        record = tx.add(Policy(settings=canonical(new.settings()), reason=reason))
        attest(tx, key, record, subject=f"policy:{record.id}", digest=policy_digest(record),
               predicate={"policy": record.id, "settings": new.settings(), "reason": reason})
        tx.event("policy.set", f"policy version {record.id}: "
                 + ", ".join(f"{k}={v}" for k, v in sorted(changes.items())),
                 policy=record.id, changes={k: list(v) if isinstance(v, tuple) else v
                                            for k, v in changes.items()})
        return _info(record)
