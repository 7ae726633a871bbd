"""`lineage checkpoint` and `lineage prove`: signed heads of the event log, and proofs against
them that verify without the database."""

from typing import Annotated

import typer

from lineage.cli.common import ActorOpt, DbOpt, JsonOpt, handle_errors, opened, out, print_json
from lineage.cli.key import TrustOpt


@handle_errors
def checkpoint_command(
        out_file: Annotated[str, typer.Option("--out", help="The checkpoint file to write.")],
        append: Annotated[bool, typer.Option(
            "--append", help="Add a line to the file (a witness file) instead of replacing it.")] = False,
        db: DbOpt = None, actor: ActorOpt = None, trust: TrustOpt = None, as_json: JsonOpt = False):
    """Write a signed checkpoint of the event log (size, Merkle root, time, signer). Keep it
    outside the store: `lineage verify --checkpoint FILE` later proves the log still extends it.

    Example: lineage checkpoint --out witness.jsonl --append --as reviewer
    """
    from lineage.review.checkpoints import write_checkpoint

    with opened(db, actor) as store:
        store.trust = trust
        cp = write_checkpoint(store, out_file, append=append)
    if as_json:
        print_json(cp)
    else:
        out.print(f"checkpoint of {cp.size} events (root {cp.root[:16]}) signed by {cp.signer} "
                  f"written to {out_file}", markup=False)


@handle_errors
def prove_command(
        snapshot: Annotated[str, typer.Option("--snapshot", help="The approved snapshot.")],
        db: DbOpt = None, trust: TrustOpt = None, as_json: JsonOpt = False):
    """Print the inclusion proof of a snapshot's approval in the event log's Merkle tree: it
    verifies offline in O(log n) hashes (lineage.review.checkpoints.verify_proof).

    Example: lineage prove --snapshot digits-train-2026w48 --json
    """
    from lineage.review.approval import prove_approval

    with opened(db) as store:
        store.trust = trust
        proof = prove_approval(store, snapshot)
    if as_json:
        print_json(proof)
    else:
        out.print(f"{proof.what}: event {proof.event_id} ({proof.event_digest[:16]}) is leaf "
                  f"{proof.leaf_index} of {proof.tree_size}, root {proof.root[:16]}, "
                  f"{len(proof.path)} hashes: " + " ".join(h[:12] for h in proof.path),
                  markup=False)
