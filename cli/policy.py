"""`lineage policy ...`: the review policy, as versioned records."""

from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    ActorOpt,
    DbOpt,
    Estimator,
    JsonOpt,
    handle_errors,
    opened,
    print_json,
    print_record,
    print_table,
)
from lineage.errors import BadInputError

policy_app = typer.Typer(help="Review policy: thresholds, evaluation snapshot, scan settings "
                         "(every change is a new version).", no_args_is_help=True)

COLUMNS = ["version", "min coverage", "max ASR", "min clean acc", "evaluation snapshot", "scan sizes",
           "estimator", "seed", "by", "at"]


def _row(p):
    return [p.version, p.min_coverage, p.max_asr, p.min_clean_accuracy, p.evaluation_snapshot,
            ",".join(map(str, p.scan_sizes)), p.reference_estimator, p.seed, p.actor or "(defaults)",
            p.created_at]


def _show(p) -> None:
    print_record("policy in force", list(zip(COLUMNS, _row(p))))


@policy_app.command("show")
@handle_errors
def show(all_: Annotated[bool, typer.Option("--all", help="Every stored version, oldest first.")] = False,
         db: DbOpt = None, as_json: JsonOpt = False):
    """Show the policy in force (version 0 means the built-in defaults). With a trust file, as
    the gates see it: a newest version no trusted key signed is an integrity error (exit 5).

    Example: lineage policy show --all
    """
    from lineage.review.keys import read_trust
    from lineage.review.policy import get_policy, list_policies

    with opened(db) as store:
        trust = read_trust(store.trust, required=False)
        policies = list_policies(store) if all_ else [
            get_policy(store, trust=trust if trust.keys else None)]
    if as_json:
        print_json(policies if all_ else policies[0])
    else:
        if all_:
            print_table("policy versions", COLUMNS, [_row(p) for p in policies],
                        drop=["at", "scan sizes", "seed", "estimator", "by"])
        else:
            _show(policies[0])


@policy_app.command("set")
@handle_errors
def set_(evaluation_snapshot: Annotated[Optional[str], typer.Option(help="Held-out snapshot the shadow evaluation and training metrics use.")] = None,
         min_coverage: Annotated[Optional[float], typer.Option(help="Minimum provenance coverage (0..1).")] = None,
         max_asr: Annotated[Optional[float], typer.Option(help="Maximum baseline-corrected ASR of the worst trigger candidate (0..1).")] = None,
         min_clean_accuracy: Annotated[Optional[float], typer.Option(help="Minimum clean accuracy on the evaluation snapshot (0..1).")] = None,
         scan_sizes: Annotated[Optional[str], typer.Option(help="Trigger patch sizes to scan, e.g. 1,2,3 (rows that are not images: one feature at a time, size 1).")] = None,
         reference_estimator: Annotated[Optional[Estimator], typer.Option(
             help="The shadow model's estimator.", show_default=False)] = None,
         seed: Annotated[Optional[int], typer.Option(help="Seed of the shadow model.")] = None,
         reason: Annotated[Optional[str], typer.Option(help="Why the policy changes (required).")] = None,
         db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False):
    """Record a new policy version: the one in force with the given settings changed, signed
    with your key (the gates count only policy versions a trusted key signed).

    Example: lineage policy set --evaluation-snapshot digits-eval --max-asr 0.3 --reason "held-out split of 2026w48"
    """
    from lineage.review.policy import set_policy

    sizes = None
    if scan_sizes is not None:
        try:
            sizes = [int(p) for p in scan_sizes.split(",") if p.strip()]
        except ValueError:
            raise BadInputError(f"--scan-sizes {scan_sizes!r}: give sizes like 1,2,3") from None
    with opened(db, actor, create=True) as store:
        p = set_policy(store, evaluation_snapshot=evaluation_snapshot, min_coverage=min_coverage,
                       max_asr=max_asr, min_clean_accuracy=min_clean_accuracy, scan_sizes=sizes,
                       reference_estimator=reference_estimator and reference_estimator.value,
                       seed=seed, reason=reason)
    if as_json:
        print_json(p)
    else:
        _show(p)
