"""`lineage snapshot ...`: freeze versions, review them through the gates, list and show."""

from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    ActorOpt,
    DbOpt,
    JsonOpt,
    TrustOpt,
    handle_errors,
    opened,
    out,
    print_json,
    print_record,
    print_table,
    progress_bar,
)

snapshot_app = typer.Typer(help="Frozen, reviewed snapshots: create, approve (runs the gates), "
                           "reject, revoke, list, show.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="The snapshot's name.")]
ReasonOpt = Annotated[Optional[str], typer.Option(help="Why (required to reject or revoke).")]


def _row(s):
    return [s.id, s.name, s.status, s.dataset, f"v{s.version_id}", s.n_rows, s.coverage,
            s.content_digest[:12], s.actor, s.created_at]


COLUMNS = ["id", "name", "status", "dataset", "version", "rows", "coverage", "digest", "by", "at"]
DROP = ["digest", "at", "id", "dataset", "coverage", "by"]


def _show(info, as_json: bool) -> None:
    if as_json:
        print_json(info)
        return
    print_record(f"snapshot {info.name}", [
        ("dataset", info.dataset),
        ("version", f"v{info.version_id}" + (f" ({info.version_name})" if info.version_name else "")),
        ("coverage", info.coverage), ("created by", info.actor), ("at", info.created_at)])
    out.print(f"status {info.status}; {info.n_rows} rows; content digest {info.content_digest}; "
              f"manifest digest {info.manifest_digest}", markup=False, highlight=False)
    for r in info.reviews:
        verdict = ("passed" if r.passed else "FAILED") if r.decision == "approve" else "recorded"
        out.print(f"review {r.id}: {r.decision} {verdict} by {r.actor} at {r.created_at:%Y-%m-%d %H:%M:%S}"
                  f" (policy version {r.policy_version})" + (f": {r.reason}" if r.reason else ""),
                  markup=False, highlight=False)
        for g in r.report.get("gates", []):
            out.print(f"  {'ok ' if g['passed'] else 'FAIL'} {g['gate']}: {g['message']}",
                      markup=False, highlight=False)
        if r.report.get("affected_models"):
            out.print(f"  affected model versions: {', '.join(r.report['affected_models'])}",
                      markup=False, highlight=False)
    if info.models:
        out.print(f"model versions trained on it: {', '.join(info.models)}", markup=False,
                  highlight=False)


@snapshot_app.command("create")
@handle_errors
def create(name: NameArg,
           version: Annotated[str, typer.Option("--version", help="The version to freeze (id, vN or name).")],
           db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False):
    """Freeze a version as a named snapshot: full manifest and content digest, pending review.

    Example: lineage snapshot create digits-train-2026w48 --version v5 --as engineer
    """
    from lineage.review.snapshots import create_snapshot

    with opened(db, actor) as store:
        _show(create_snapshot(store, name, version=version), as_json)


@snapshot_app.command("approve")
@handle_errors
def approve(name: NameArg, reason: ReasonOpt = None, db: DbOpt = None, actor: ActorOpt = None,
            trust: TrustOpt = None, as_json: JsonOpt = False):
    """Run every gate (coverage, sources, four eyes, shadow evaluation) and record the review;
    exit 4 listing each failed check (the failed review is recorded, the snapshot stays pending).

    Example: lineage snapshot approve digits-train-2026w48 --as reviewer
    """
    from lineage.review.gates import approve_snapshot

    with opened(db, actor, trust=trust) as store, progress_bar(f"running the gates on {name}"):
        info = approve_snapshot(store, name, reason=reason)
    _show(info, as_json)


@snapshot_app.command("reject")
@handle_errors
def reject(name: NameArg, reason: ReasonOpt = None, db: DbOpt = None, actor: ActorOpt = None,
           trust: TrustOpt = None, as_json: JsonOpt = False):
    """Reject a pending snapshot.

    Example: lineage snapshot reject digits-train-2026w48 --reason "labels unchecked" --as reviewer
    """
    from lineage.review.gates import reject_snapshot

    with opened(db, actor, trust=trust) as store:
        _show(reject_snapshot(store, name, reason=reason), as_json)


@snapshot_app.command("revoke")
@handle_errors
def revoke(name: NameArg, reason: ReasonOpt = None, db: DbOpt = None, actor: ActorOpt = None,
           trust: TrustOpt = None, as_json: JsonOpt = False):
    """Revoke an approved snapshot; lists the model versions trained on it (now affected).

    Example: lineage snapshot revoke digits-train-2026w48 --reason "poisoned rows found" --as reviewer
    """
    from lineage.review.gates import revoke_snapshot

    with opened(db, actor, trust=trust) as store:
        info = revoke_snapshot(store, name, reason=reason)
    _show(info, as_json)


@snapshot_app.command("list")
@handle_errors
def list_(db: DbOpt = None, as_json: JsonOpt = False):
    """List snapshots with their status (from their reviews), rows, coverage and digest.

    Example: lineage snapshot list --json
    """
    from lineage.review.snapshots import list_snapshots

    with opened(db) as store:
        snaps = list_snapshots(store)
    if as_json:
        print_json(snaps)
    else:
        print_table("snapshots", COLUMNS, [_row(s) for s in snaps], drop=DROP)


@snapshot_app.command("show")
@handle_errors
def show(name: NameArg, db: DbOpt = None, as_json: JsonOpt = False):
    """Show a snapshot: status, digests, coverage, every review with its gate report, models.

    Example: lineage snapshot show digits-train-2026w48
    """
    from lineage.review.snapshots import get_snapshot

    with opened(db) as store:
        _show(get_snapshot(store, name), as_json)


@snapshot_app.command("attestation")
@handle_errors
def attestation(name: NameArg,
                out_file: Annotated[str, typer.Option("--out", help="Where to write the envelope.")],
                db: DbOpt = None, as_json: JsonOpt = False):
    """Write the signed attestation of a snapshot's approval in force: a DSSE envelope over an
    in-toto Statement v1 (subject: the snapshot's content digest), for in-toto / DSSE tooling.

    Example: lineage snapshot attestation digits-train-2026w48 --out digits-train.intoto.json
    """
    from lineage.review.approval import write_attestation

    with opened(db) as store:
        info = write_attestation(store, name, out_file)
    if as_json:
        print_json(info)
    else:
        out.print(f"attestation of review {info['review']} (approve, signed by {info['signer']}, "
                  f"key {info['keyid'][:16]}) written to {out_file}", markup=False)

