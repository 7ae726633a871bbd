"""`lineage train` and `lineage model ...`: model versions from approved snapshots, their
artifacts and release; external models through quarantine (import, evaluate, review)."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    ActorOpt,
    DbOpt,
    Estimator,
    JsonOpt,
    TrustOpt,
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

model_app = typer.Typer(help="Model versions: list, show, export the artifact, release; "
                        "external models: import, evaluate, review.", no_args_is_help=True)

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
    if getattr(m, "external", False):
        _show_external(m)
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


def _show_external(m) -> None:
    print_record(f"external model {m.ref}", [
        ("status", m.status), ("source", f"{m.source} ({m.source_status})"),
        ("format", m.format), ("file", m.file_name), ("sha256", m.file_sha256),
        ("size", f"{m.file_size} bytes"), ("input", f"dataset {m.dataset} as stored, " + (
            "no declared value range" if m.input_schema["value_max"] is None else
            f"values {m.input_schema['value_min']:g}..{m.input_schema['value_max']:g}")),
        ("trusted types", ", ".join(m.trusted_types) or "-"), ("by", m.actor),
        ("at", m.created_at)])
    if m.status_reason:
        out.print(f"{m.status}: {m.status_reason}", markup=False, highlight=False)
    for e in m.evaluations:
        out.print(f"evaluation {e['id']}: {'passed' if e['passed'] else 'FAILED'} by {e['actor']} "
                  f"(policy version {e['policy_version']})", markup=False, highlight=False)
    if m.evaluation:
        out.print(f"  {m.evaluation['message']}", markup=False, highlight=False)
    for r in m.reviews:
        out.print(f"review {r['id']}: {r['decision']} by {r['actor']}"
                  + (f": {r['reason']}" if r["reason"] else ""), markup=False, highlight=False)


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
    db: DbOpt = None, actor: ActorOpt = None, trust: TrustOpt = None, as_json: JsonOpt = False,
):
    """Train on an approved snapshot (only) and register a model version with its metrics.

    Up to 2^25 feature values (524,288 rows of 64 features) the fit holds the rows as float64;
    beyond, it runs out of core in one seeded pass over float32 blocks of 65,536 rows (logistic:
    SGD on the same L2 log loss; mlp: partial_fit), so memory follows the stored rows. The model
    version's params record which ("fit").

    Example: lineage train --snapshot digits-train-2026w48 --model digits-clf --estimator logistic --seed 0
    """
    from lineage.models.training import train

    params = _params(param)
    with opened(db, actor, create=True, trust=trust) as store, \
            progress_bar(f"training {model} on {snapshot}"):
        info = train(store, snapshot=snapshot, model=model, estimator=estimator.value, seed=seed,
                     params=params)
    _show(info, as_json)


@model_app.command("list")
@handle_errors
def list_(db: DbOpt = None, as_json: JsonOpt = False):
    """List model versions with status, snapshot and metrics.

    Example: lineage model list
    """
    from lineage.models.external import list_external_models
    from lineage.models.registry import list_models

    with opened(db) as store:
        models = list_models(store)
        external = list_external_models(store)
    if as_json:
        print_json(models + external)
        return
    print_table("model versions", COLUMNS, [_row(m) for m in models], drop=DROP)
    if external:
        print_table("external models", ["model", "status", "source", "format", "sha256", "by"],
                    [[m.ref, m.status, m.source, m.format, m.file_sha256, m.actor]
                     for m in external], drop=["sha256", "by"])


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
           out_path: Annotated[Path, typer.Option("--out", help="File to write the stored artifact to (skops, or the imported file).")],
           force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
           db: DbOpt = None, as_json: JsonOpt = False):
    """Write a model version's stored artifact (verified against its sha256) to a file. An
    affected model (its snapshot was revoked) is still written, for forensics, with a warning on
    stderr (and "affected": true in --json); `model release` refuses it. An external model is
    written only once a signed review approved it (exit 4 while quarantined or rejected).

    Example: lineage model export digits-clf:1 --out digits-clf-1.skops
    """
    from lineage.models.registry import export_model

    with opened(db) as store:
        m = export_model(store, ref, out_path, overwrite=force)
    if getattr(m, "external", False):
        if as_json:
            print_json({"model": m.ref, "path": str(out_path), "sha256": m.file_sha256,
                        "bytes": m.file_size, "status": m.status, "external": True})
        else:
            out.print(f"wrote {m.ref} to {out_path} ({m.file_size} bytes, sha256 {m.file_sha256})")
        return
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
            db: DbOpt = None, actor: ActorOpt = None, trust: TrustOpt = None,
            as_json: JsonOpt = False):
    """Release gate: snapshot still approved, clean accuracy and ASR within the policy, four eyes;
    exit 4 listing each failed check (the failed review is recorded). An external model must be
    approved (else exit 4, nothing recorded), its newest evaluation passed under the policy in
    force and the releaser not its importer (else exit 4, the refused attempt recorded).

    Example: lineage model release digits-clf:1 --as reviewer
    """
    from lineage.models.registry import release_model

    with opened(db, actor, trust=trust) as store, \
            progress_bar(f"running the release gate on {ref}"):
        info = release_model(store, ref, reason=reason)
    _show(info, as_json)


@model_app.command("import")
@handle_errors
def import_(
    path: Annotated[Path, typer.Argument(help="The model file: skops (.skops) or ONNX (.onnx).")],
    name: Annotated[str, typer.Option("--name", help="The model's name (versions are numbered).")],
    source: Annotated[str, typer.Option("--source", help="The source it comes from (`lineage "
                                        "source add NAME --kind third-party`).")],
    dataset: Annotated[Optional[str], typer.Option(
        help="The dataset whose features the model takes [default: the policy's evaluation "
        "snapshot's].", show_default=False)] = None,
    value_range: Annotated[Optional[str], typer.Option(
        "--value-range", help="The input values the model declares, LOW:HIGH; must be the "
        "dataset's (checked).")] = None,
    trust_type: Annotated[Optional[list[str]], typer.Option(
        "--trust-type", help="A type in a skops file that skops does not trust by default, "
        "checked by you and trusted for this model (repeatable).")] = None,
    db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False,
):
    """Import an external model into quarantine: its sha256, format, size, source and importer
    are recorded; only `lineage model evaluate` may run it until a signed review approves it.

    The model is fed the dataset's features exactly as the store holds them (its raw values,
    e.g. digits 0..16, no scaling: a model trained on scaled values must carry its scaler): its
    feature count and classes are checked against the dataset's at import, and again against
    the evaluation snapshot's at evaluation; --value-range, if given, must be the dataset's.
    A pickle or joblib file is refused, never unpickled (it could run code); a skops file holding a type
    skops does not trust is refused with the list (exit 2) unless each is named by
    --trust-type; ONNX needs the onnx extra (pip install 'lineage-store[onnx]'). The source may
    still be under review (that is what quarantine is for); a rejected or revoked one is
    refused (exit 4).

    Example: lineage model import vendor.skops --name vendor-clf --source vendor-models
    """
    from lineage.models.external import import_model, parse_value_range

    with opened(db, actor) as store:
        info = import_model(store, path, name=name, source=source, dataset=dataset,
                            trust_types=trust_type or (), value_range=parse_value_range(value_range))
    _show(info, as_json)


@model_app.command("evaluate")
@handle_errors
def evaluate(
    ref: RefArg,
    budget: Annotated[Optional[int], typer.Option(
        help="Rows predicted per searched model by the reverse-engineering search "
        "[default: 2000000].", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed of the search and the reference models [default: the policy's].",
        show_default=False)] = None,
    db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False,
):
    """Evaluate an external model in isolation, on the policy's evaluation snapshot only: its
    input schema checked, clean accuracy, the trigger scan per source class -> target class,
    and a black-box search for the smallest trigger per source -> target (mask and pattern in
    --json). Recorded pass or fail; exit 4 when it fails the policy's gates.

    Example: lineage model evaluate vendor-clf:1
    """
    from lineage.models.external import evaluate_model
    from lineage.poison.reverse import DEFAULT_BUDGET

    with opened(db, actor) as store, progress_bar(f"evaluating {ref}"):
        result = evaluate_model(store, ref, budget=DEFAULT_BUDGET if budget is None else budget,
                                seed=seed)
    r = result.report
    if as_json:
        print_json({"evaluation": result.id, **r})
    else:
        rev, worst = r["reverse"], r["worst_source_asr"]
        print_record(f"evaluation {result.id} of {result.model}", [
            ("passed", r["passed"]), ("snapshot", f"{r['evaluation_snapshot']} "
                                      f"({r['evaluation_rows']} rows)"),
            ("clean accuracy", r["clean_accuracy"]),
            ("worst square", f"{r['worst_trigger']}: ASR {r['worst_asr']:.4f} (reported)"),
            ("worst by class", f"{worst['trigger']} class {worst['source']} -> "
                               f"{worst['target']}: ASR {worst['asr']:.4f}" if worst else "-"),
            ("reverse search", f"{rev['queries']} queries, seed {rev['seed']}, "
                               f"{len(rev['flagged'])} flagged")])
        best = rev["smallest"]
        if best is not None:
            out.print(f"smallest trigger: class {best['source']} -> {best['target']}, "
                      f"{len(best['pixels'])} pixels {best['pixels']}, sampled ASR "
                      f"{best['asr']:.2f}, effort ratio {best['ratio']:.2f} "
                      f"(anomaly index {best['anomaly_index']:.1f})", markup=False,
                      highlight=False)
        out.print(r["message"], markup=False, highlight=False)
    if not result.passed:
        err.print(f"Error: external model {result.model} failed its evaluation (recorded as "
                  f"evaluation {result.id}): {r['message']}", markup=False, highlight=False)
        raise typer.Exit(4)


@model_app.command("review")
@handle_errors
def review(
    ref: RefArg,
    approve: Annotated[bool, typer.Option("--approve", help="Approve (needs a passed evaluation, measured again here).")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject a model in quarantine.")] = False,
    revoke: Annotated[bool, typer.Option("--revoke", help="Revoke an approval.")] = False,
    reason: Annotated[Optional[str], typer.Option(help="Why (required to reject or revoke).")] = None,
    db: DbOpt = None, actor: ActorOpt = None, trust: TrustOpt = None, as_json: JsonOpt = False,
):
    """Record a signed review of an external model: exactly one of --approve, --reject,
    --revoke. Approval is refused (exit 4) unless the newest evaluation passed under the policy
    in force, the model's source is approved (not quarantined, rejected or revoked) and the
    reviewer is not the importer; the refused attempt is recorded (a signed review with
    decision "refused" and the failed checks), as a failed release is.

    Example: lineage model review vendor-clf:1 --approve --as reviewer
    """
    from lineage.models.external import review_model

    chosen = [d for d, on in (("approve", approve), ("reject", reject), ("revoke", revoke)) if on]
    if len(chosen) != 1:
        raise BadInputError("give exactly one of --approve, --reject, --revoke")
    with opened(db, actor, trust=trust) as store:
        _show(review_model(store, ref, decision=chosen[0], reason=reason), as_json)
