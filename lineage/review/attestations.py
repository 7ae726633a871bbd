"""Signed statements: every review is a DSSE envelope over an in-toto Statement v1.

The statement's subject is what the review is about, named and bound by its sha256 content
digest (a snapshot's content digest, a source's record digest, a model's artifact digest); the
predicate holds the decision, the review record's id, the gate report and the policy version.
The envelope is signed with the reviewer's Ed25519 key over DSSE's pre-authentication encoding,
so standard in-toto / DSSE tooling verifies it given the public key. Envelopes are stored in the
``attestations`` table beside the review they sign; only one that verifies against the trust
file counts.
"""

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import select

from lineage.errors import IntegrityError, RefusedError
from lineage.review.keys import SigningKey, Trust, load_signing_key, read_trust
from lineage.store.chain import canonical
from lineage.store.names import identity
from lineage.store.tables import Attestation

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
REVIEW_PREDICATE = "https://lineage.dev/attestation/review/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes a signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(*, subject: str, digest: str, predicate_type: str, predicate: dict) -> dict:
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": subject, "digest": {"sha256": digest}}],
            "predicateType": predicate_type, "predicate": predicate}


def sign(key: SigningKey, body: dict, *, payload_type: str = PAYLOAD_TYPE) -> dict:
    """A DSSE envelope over ``body`` (canonical JSON), signed by ``key``."""
    payload = canonical(body).encode()
    return {"payloadType": payload_type,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": key.keyid,
                            "sig": base64.b64encode(key.sign(pae(payload_type, payload))).decode()}]}


@dataclass(frozen=True)
class Verified:
    """A statement whose signature verified against a trusted key."""

    signer: str  # the name the trust file gives the key
    keyid: str
    body: dict

    @property
    def digest(self) -> Optional[str]:
        subject = self.body.get("subject") or [{}]
        return (subject[0].get("digest") or {}).get("sha256")

    @property
    def predicate(self) -> dict:
        return self.body.get("predicate") or {}


def verify(envelope: str | dict, trust: Trust, *, what: str,
           payload_type: str = PAYLOAD_TYPE) -> Verified:
    """Check an envelope's signature against the trust file.

    Raises RefusedError when no signature is by a trusted key (exit 4: untrusted) and
    IntegrityError when the envelope is malformed or a trusted key's signature does not verify
    (exit 5: the bytes were changed). ``what`` names the record in the message.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        env = json.loads(envelope) if isinstance(envelope, str) else envelope
        payload = base64.b64decode(env["payload"], validate=True)
        signatures = [(s["keyid"], base64.b64decode(s["sig"], validate=True))
                      for s in env["signatures"]]
        if env["payloadType"] != payload_type:
            raise ValueError(f"payload type {env['payloadType']!r}")
        body = json.loads(payload)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{what}: its signed envelope is malformed ({exc}): run "
                             "`lineage verify`") from None
    known = [(trust.by_keyid(keyid), sig) for keyid, sig in signatures]
    known = [(k, sig) for k, sig in known if k is not None]
    if not known:
        ids = ", ".join(k[:16] for k, _ in signatures) or "none"
        raise RefusedError(f"{what} is signed by no key in the trust file {trust.path} "
                           f"(keys {ids}): only trusted reviewers' signatures count")
    for key, sig in known:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(key.public_key).verify(
                sig, pae(env["payloadType"], payload))
        except InvalidSignature:
            raise IntegrityError(f"{what}: the signature of {key.name!r} does not verify (the "
                                 "signed statement was changed): run `lineage verify`") from None
        return Verified(signer=key.name, keyid=key.keyid, body=body)
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- in the store

def signing_key_for(store) -> tuple[SigningKey, Trust]:
    """The store actor's signing key and the trust file, checked before anything is written:
    the key must be trusted under the actor's own name."""
    trust = read_trust(store.trust)
    key = load_signing_key(store.actor, store.keys)
    entry = trust.by_keyid(key.keyid)
    if entry is None:
        raise RefusedError(f"{store.actor!r}'s key {key.keyid[:16]} ({key.path}) is not in the "
                           f"trust file {trust.path}: run `lineage key trust {store.actor}` (or "
                           "ask whoever keeps the team's trust file)")
    if identity(entry.name) != identity(store.actor):
        raise RefusedError(f"the key at {key.path} is trusted as {entry.name!r}, not as "
                           f"{store.actor!r}: sign as {entry.name!r} or use your own key")
    return key, trust


def attest(tx, key: SigningKey, record, *, subject: str, digest: str, predicate: dict):
    """Sign a statement about ``record`` (flushed, so it has its id) and store it beside it."""
    table = record.__tablename__
    body = statement(subject=subject, digest=digest, predicate_type=REVIEW_PREDICATE,
                     predicate={**predicate, "record": {"table": table, "id": int(record.id)},
                                "signer": key.name, "time": tx.now.isoformat()})
    return tx.add(Attestation(record_table=table, record_id=int(record.id), subject=subject,
                              digest=digest, keyid=key.keyid, signer=key.name,
                              envelope=canonical(sign(key, body))))


def attestation_of(session, record) -> Optional[Attestation]:
    return session.scalars(select(Attestation).where(
        Attestation.record_table == record.__tablename__,
        Attestation.record_id == int(record.id))).first()


def verified_attestation(session, record, trust: Trust, *, what: str) -> Verified:
    """The verified statement signed about ``record``. RefusedError when it has none, or none
    by a trusted key (e.g. a review made before signed reviews, or inserted behind the store's
    back); IntegrityError when the signature or the record it names does not match."""
    row = attestation_of(session, record)
    if row is None:
        raise RefusedError(f"{what} is not signed (recorded before signed reviews, or inserted "
                           "behind the store's back): review it again")
    verified = verify(row.envelope, trust, what=what)
    if verified.predicate.get("record") != {"table": record.__tablename__, "id": int(record.id)}:
        raise IntegrityError(f"{what}: its signed statement is about another record: run "
                             "`lineage verify`")
    return verified


@dataclass(frozen=True)
class SignatureReport:
    signed: int  # records whose signed statement verified
    legacy: int  # unsigned records from before the store's first signed one (an upgraded store)


def _subject_digest(session, table: str, record) -> Optional[str]:
    """The digest a record's statement must bind, recomputed from the store."""
    from lineage.store.tables import ExternalModel, ModelVersion, Snapshot, Source

    if table == "policies":  # review.policy.policy_digest
        return hashlib.sha256(record.settings.encode("utf-8")).hexdigest()
    if table == "snapshot_reviews":
        snapshot = session.get(Snapshot, record.snapshot_id)
        return snapshot.content_digest if snapshot is not None else None
    if table == "source_reviews":
        source = session.get(Source, record.source_id)
        return source.record_digest if source is not None else None
    if table == "model_reviews":
        mv = session.get(ModelVersion, record.model_version_id)
        return mv.artifact_sha256 if mv is not None else None
    if table == "external_reviews":
        em = session.get(ExternalModel, record.external_model_id)
        return em.file_sha256 if em is not None else None
    return record.artifact_sha256  # model_versions


def verify_signatures(store, trust: Trust) -> SignatureReport:
    """Every review and model version against its signed statement: the signature by a trusted
    key, the statement about this record and binding the digest the store holds now. A record
    without one is refused too, unless it is older than the first signed record of its table
    (made before this store signed reviews). Raises IntegrityError or RefusedError naming the
    first record that fails."""
    from lineage.store.tables import (
        ExternalReview,
        ModelReview,
        ModelVersion,
        Policy,
        SnapshotReview,
        SourceReview,
    )

    signed = legacy = 0
    with store.read() as session:
        rows = {(a.record_table, a.record_id): a for a in session.scalars(select(Attestation))}
        for model in (SnapshotReview, SourceReview, ModelReview, ModelVersion, ExternalReview,
                      Policy):
            table = model.__tablename__
            first_signed = min((i for t, i in rows if t == table), default=None)
            for record in session.scalars(select(model).order_by(model.id)):
                what = f"{table} record {record.id}"
                if (table, record.id) not in rows:
                    if first_signed is None or record.id < first_signed:
                        legacy += 1
                        continue
                    raise IntegrityError(f"{what} is not signed, though the store signs every "
                                         "review: inserted behind the store's back")
                verified = verified_attestation(session, record, trust, what=what)
                if verified.digest != _subject_digest(session, table, record):
                    raise IntegrityError(f"{what}: its signed statement binds another digest "
                                         "than the store holds now")
                signed += 1
    return SignatureReport(signed=signed, legacy=legacy)
