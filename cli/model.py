"""`lineage train` and `lineage model ...`: model versions from approved snapshots, their
artifacts and release."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    ActorOpt,
    DbOpt,
    Estimator,
    JsonOpt,
    err,
    handle_errors,
    opened,
    out,
    print_json,
    print_record,
    print_table,
    progress_bar,
)
from lineage.errors import BadInputError

model_app = typer.Typer(help="Model versions: list, show, export the artifact, release.",
                        no_args_is_help=True)

RefArg = Annotated[str, typer.Argument(help="NAME:NUMBER (or NAME for its newest version).")]
COLUMNS = ["model", "status", "estimator", "snapshot", "clean acc", "worst ASR", "worst trigger",
           "artifact", "by", "at"]
DROP = ["artifact", "at", "worst trigger", "estimator", "by"]


def _row(m):
    return [m.ref, m.status, m.estimator, m.snapshot, m.clean_accuracy, m.worst_asr,
            m.metrics.get("worst_trigger"), m.artifact_sha256[:12], m.actor, m.created_at]


def _show(m, as_json: bool) -> None:
    if as_json:
        print_json(m)
        return
    print_record(f"model {m.ref}", [
        ("status", m.status), ("estimator", m.estimator), ("snapshot", m.snapshot),
        ("clean accuracy", m.clean_accuracy), ("worst ASR", m.worst_asr),
        ("worst trigger", m.metrics.get("worst_trigger")), ("by", m.actor), ("at", m.created_at),
        ("snap. digest", m.snapshot_digest), ("artifact", m.artifact_sha256),
        ("artifact size", f"{m.artifact_size} bytes"),
        ("params", json.dumps(m.params, sort_keys=True)), ("code", m.code_identity)])
    if m.status == "affected":
        out.print(f"AFFECTED: {m.affected_reason}", markup=False, highlight=False)
    for t in m.metrics.get("triggers", [])[:5]:
        out.print(f"  trigger {t['trigger']} -> {t['target']}: ASR {t['asr']:.4f} "
                  f"(raw {t['raw_asr']:.4f}, baseline {t['baseline_asr']:.4f})", markup=False,
                  highlight=False)
    for r in m.reviews:
        out.print(f"review {r['id']}: {r['decision']} {'passed' if r['passed'] else 'FAILED'} by "
                  f"{r['actor']} (policy version {r['policy_version']})", markup=False,
                  highlight=False)


def _params(items: Optional[list[str]]) -> dict:
    params = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"--param {item!r}: write KEY=VALUE, e.g. max_iter=200")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


@handle_errors
def train_command(
    snapshot: Annotated[str, typer.Option("--snapshot", help="An approved snapshot.")],
    model: Annotated[str, typer.Option("--model", help="The model's name (versions are numbered).")],
    estimator: Annotated[Estimator, typer.Option(help="The estimator to fit.")] = Estimator.logistic,
    seed: Annotated[int, typer.Option(help="Random seed of the estimator.")] = 0,
    param: Annotated[Optional[list[str]], typer.Option(help="Estimator parameter KEY=VALUE (repeatable).")] = None,
    db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False,
):
    """Train on an approved snapshot (only) and register a model version with its metrics.

    Example: lineage train --snapshot digits-train-2026w48 --model digits-clf --estimator logistic --seed 0
    """
    from lineage.models.training import train

    params = _params(param)
    with opened(db, actor, create=True) as store, progress_bar(f"training {model} on {snapshot}"):
        info = train(store, snapshot=snapshot, model=model, estimator=estimator.value, seed=seed,
                     params=params)
    _show(info, as_json)


@model_app.command("list")
@handle_errors
def list_(db: DbOpt = None, as_json: JsonOpt = False):
    """List model versions with status, snapshot and metrics.

    Example: lineage model list
    """
    from lineage.models.registry import list_models

    with opened(db) as store:
        models = list_models(store)
    if as_json:
        print_json(models)
    else:
        print_table("model versions", COLUMNS, [_row(m) for m in models], drop=DROP)


@model_app.command("show")
@handle_errors
def show(ref: RefArg, db: DbOpt = None, as_json: JsonOpt = False):
    """Show a model version: status (affected when its snapshot was revoked), metrics, reviews.

    Example: lineage model show digits-clf:1
    """
    from lineage.models.registry import get_model

    with opened(db) as store:
        _show(get_model(store, ref), as_json)


@model_app.command("export")
@handle_errors
def export(ref: RefArg,
           out_path: Annotated[Path, typer.Option("--out", help="File to write the pickled pipeline to.")],
           force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
           db: DbOpt = None, as_json: JsonOpt = False):
    """Write a model version's stored artifact (verified against its sha256) to a file. An
    affected model (its snapshot was revoked) is still written, for forensics, with a warning on
    stderr (and "affected": true in --json); `model release` refuses it.

    Example: lineage model export digits-clf:1 --out digits-clf-1.pkl
    """
    from lineage.models.registry import export_model

    with opened(db) as store:
        m = export_model(store, ref, out_path, overwrite=force)
    affected = m.status == "affected"
    if affected:
        err.print(f"Warning: {m.ref} is affected ({m.affected_reason}); do not deploy it",
                  markup=False, highlight=False)
    if as_json:
        print_json({"model": m.ref, "path": str(out_path), "sha256": m.artifact_sha256,
                    "bytes": m.artifact_size, "status": m.status, "affected": affected,
                    "affected_reason": m.affected_reason})
    else:
        out.print(f"wrote {m.ref} to {out_path} ({m.artifact_size} bytes, sha256 {m.artifact_sha256})")


@model_app.command("release")
@handle_errors
def release(ref: RefArg, reason: Annotated[Optional[str], typer.Option(help="Why.")] = None,
            db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False):
    """Release gate: snapshot still approved, clean accuracy and ASR within the policy, four eyes;
    exit 4 listing each failed check (the failed review is recorded).

    Example: lineage model release digits-clf:1 --as reviewer
    """
    from lineage.models.registry import release_model

    with opened(db, actor) as store, progress_bar(f"running the release gate on {ref}"):
        info = release_model(store, ref, reason=reason)
    _show(info, as_json)
