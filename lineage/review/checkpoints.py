"""Checkpoints: signed heads of the event log's Merkle tree, published outside the store.

A checkpoint is a DSSE envelope over ``{"size", "root", "time", "signer"}`` signed with a trusted
key. Kept where the database's writer cannot reach (a witness file, a CI artifact), it pins
history: ``check_checkpoints`` proves the current log extends every checkpoint it is given (an
RFC 9162 consistency proof), so a history rewritten, or cut back to before a revocation, is an
integrity failure naming the first missing event. ``prove_snapshot`` gives the inclusion proof
of a snapshot's approval, which verifies offline in O(log n) hashes.

With ``LINEAGE_WITNESS=FILE`` every review appends a checkpoint to that file (JSON lines), and
the load paths check the log against every checkpoint in it.
"""

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.errors import BadInputError, IntegrityError, NotFoundError
from lineage.review.attestations import sign, signing_key_for, verify
from lineage.review.keys import Trust, read_trust
from lineage.store.engine import Store, utcnow
from lineage.store.files import read_text
from lineage.store.merkle import (
    consistency_proof,
    leaf_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from lineage.store.tables import Event

CHECKPOINT_TYPE = "application/vnd.lineage.checkpoint+json"


def witness_path() -> Optional[Path]:
    value = os.environ.get("LINEAGE_WITNESS")
    return Path(value) if value else None


def event_leaves(session: Session) -> tuple[list[bytes], list[int]]:
    """The Merkle leaves of the event log (leaf hashes of the event digests, in id order) and
    the event ids."""
    rows = session.execute(select(Event.id, Event.digest).order_by(Event.id)).all()
    return [leaf_hash(bytes.fromhex(d)) for _, d in rows], [i for i, _ in rows]


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: str
    time: str
    signer: str
    keyid: str


def make_checkpoint(store: Store) -> dict:
    """A checkpoint of the store's log now, signed by the store's actor (a trusted key)."""
    key, _ = signing_key_for(store)
    with store.read() as session:
        leaves, _ = event_leaves(session)
    body = {"size": len(leaves), "root": tree_root(leaves).hex(),
            "time": utcnow().isoformat(timespec="seconds") + "Z", "signer": key.name}
    return sign(key, body, payload_type=CHECKPOINT_TYPE)


def write_checkpoint(store: Store, path: str | os.PathLike, *, append: bool = False) -> Checkpoint:
    """Write (or with ``append``, add as a line to) a checkpoint file.

    Example: ``write_checkpoint(store, "witness.jsonl", append=True)``
    """
    envelope = make_checkpoint(store)
    path = Path(path)
    line = json.dumps(envelope, sort_keys=True) + "\n"
    try:
        with open(path, "a" if append else "w", encoding="utf-8") as f:
            f.write(line)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot write the checkpoint ({exc.strerror or exc})") from None
    body = json.loads(base64.b64decode(envelope["payload"]))
    return Checkpoint(size=body["size"], root=body["root"], time=body["time"],
                      signer=body["signer"], keyid=envelope["signatures"][0]["keyid"])


def witness(store: Store) -> None:
    """After a review: append a checkpoint to ``LINEAGE_WITNESS`` when it is set."""
    path = witness_path()
    if path is not None:
        write_checkpoint(store, path, append=True)


def read_checkpoints(path: str | os.PathLike, trust: Trust) -> list[Checkpoint]:
    """Every checkpoint in a file (one envelope, or one per line), each signature verified."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no checkpoint file {path}")
    text = read_text(path, "checkpoint file").strip()
    try:
        envelopes = [json.loads(text)] if text.startswith("{") and "\n" not in text else \
            [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise BadInputError(f"{path}: not a checkpoint file ({exc})") from None
    if not envelopes:  # a wiped witness file must not pass as "every checkpoint extended"
        raise BadInputError(f"{path}: holds no checkpoint")
    out = []
    for n, env in enumerate(envelopes, 1):
        signed = verify(env, trust, what=f"checkpoint {n} of {path}", payload_type=CHECKPOINT_TYPE)
        body = signed.body
        try:
            out.append(Checkpoint(size=int(body["size"]), root=str(body["root"]),
                                  time=str(body["time"]), signer=signed.signer,
                                  keyid=signed.keyid))
        except (KeyError, TypeError, ValueError):
            raise IntegrityError(f"checkpoint {n} of {path} is signed but malformed") from None
    return out


def check_log(session: Session, checkpoints: list[Checkpoint], *, source: str) -> int:
    """Prove the current log extends every checkpoint; returns how many were checked. Raises
    IntegrityError naming the first event the log lost, or the checkpoint it no longer extends."""
    leaves, ids = event_leaves(session)
    root = tree_root(leaves)
    for cp in checkpoints:
        when = f"the checkpoint of {cp.time} by {cp.signer} ({source})"
        if cp.size > len(leaves):
            raise IntegrityError(f"the event log has {len(leaves)} events, {when} saw {cp.size}: "
                                 f"history was cut back; event {len(leaves) + 1} is missing")
        if cp.size == 0:
            continue
        proof = consistency_proof(leaves, cp.size)
        if not verify_consistency(cp.size, bytes.fromhex(cp.root), len(leaves), root, proof):
            # The root alone cannot say which event changed; a gap in the ids can.
            first = next((k for k in range(1, cp.size + 1) if ids[k - 1] != k), None)
            where = (f"event {first} is missing" if first else
                     f"some of events 1..{cp.size} were changed or replaced")
            raise IntegrityError(f"the event log does not extend {when} (size {cp.size}, root "
                                 f"{cp.root[:16]}): history was rewritten ({where})")
    return len(checkpoints)


def check_checkpoints(store: Store, path: Optional[str | os.PathLike] = None, *,
                      trust: Optional[Trust] = None) -> int:
    """``check_log`` against the checkpoints in ``path`` (default ``LINEAGE_WITNESS``; none:
    nothing to check, returns 0).

    Example: ``check_checkpoints(store, "witness.jsonl")``
    """
    path = Path(path) if path else witness_path()
    if path is None:
        return 0
    if path == witness_path() and (not path.exists() or (path.is_file()
                                                          and not path.stat().st_size)):
        return 0  # a witness file not written yet: nothing pinned so far
    checkpoints = read_checkpoints(path, trust or read_trust(store.trust))
    with store.read() as session:
        return check_log(session, checkpoints, source=str(path))


@dataclass(frozen=True)
class InclusionProof:
    """An event's inclusion in the log's Merkle tree: verify with ``verify_proof``."""

    what: str
    event_id: int
    event_digest: str
    leaf_index: int
    tree_size: int
    root: str
    path: tuple  # hex node hashes, bottom up


def verify_proof(proof: dict | InclusionProof) -> bool:
    """Check an inclusion proof offline: O(log n) hashes, no store needed."""
    p = proof if isinstance(proof, dict) else proof.__dict__
    return verify_inclusion(leaf_hash(bytes.fromhex(p["event_digest"])), int(p["leaf_index"]),
                            int(p["tree_size"]), [bytes.fromhex(h) for h in p["path"]],
                            bytes.fromhex(p["root"]))
