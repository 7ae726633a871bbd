"""`lineage key ...`: reviewers' key pairs and the trust file that says whose signatures count."""

from typing import Annotated, Optional

import typer

from lineage.cli.common import (  # noqa: F401  TrustOpt: imported from here by other commands
    ActorOpt,
    JsonOpt,
    TrustOpt,
    handle_errors,
    out,
    print_json,
    print_table,
)

key_app = typer.Typer(help="Keys are identities: make a reviewer's Ed25519 key pair, add public "
                      "keys to the trust file, list the trusted keys.", no_args_is_help=True)


@key_app.command("create")
@handle_errors
def create(actor: ActorOpt = None,
           path: Annotated[Optional[str], typer.Option(
               "--out", help="Where to write the private key [default: $LINEAGE_KEY or "
                             "~/.config/lineage/keys/NAME.key].", show_default=False)] = None,
           force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
           as_json: JsonOpt = False):
    """Make an Ed25519 key pair for NAME (--as): the private key (0600) and NAME.pub beside it.

    Example: lineage key create --as reviewer
    """
    from lineage.review.keys import create_key, key_path
    from lineage.store.engine import resolve_actor

    name = resolve_actor(actor)
    info = create_key(name, path=path, force=force)
    where = path or str(key_path(name))
    if as_json:
        print_json({"name": info.name, "keyid": info.keyid, "path": where})
    else:
        out.print(f"key {info.keyid[:16]} for {info.name!r} written to {where} (public key beside "
                  f"it); trust it with `lineage key trust {info.name}`", markup=False)


@key_app.command("trust")
@handle_errors
def trust(name: Annotated[str, typer.Argument(help="Whose key to trust.")],
          public_key: Annotated[Optional[str], typer.Option(
              "--public-key", help="A PEM public key file [default: NAME's local key].",
              show_default=False)] = None,
          trust_file: TrustOpt = None, as_json: JsonOpt = False):
    """Add NAME's public key to the trust file (made if missing): from --public-key, or NAME's
    local key. Keep the trust file outside the database (a repository, a CI secret).

    Example: lineage key trust reviewer --public-key reviewer.pub
    """
    from lineage.review.keys import resolve_trust_path, trust_key

    info = trust_key(name, trust=trust_file, public_key=public_key)
    if as_json:
        print_json({"name": info.name, "keyid": info.keyid,
                    "trust_file": str(resolve_trust_path(trust_file))})
    else:
        out.print(f"{info.name!r} (key {info.keyid[:16]}) is trusted in "
                  f"{resolve_trust_path(trust_file)}", markup=False)


@key_app.command("list")
@handle_errors
def list_keys(trust_file: TrustOpt = None, as_json: JsonOpt = False):
    """List the keys the trust file trusts, and whose they are.

    Example: lineage key list
    """
    from lineage.review.keys import read_trust

    trusted = read_trust(trust_file)
    if as_json:
        print_json([{"name": k.name, "keyid": k.keyid} for k in trusted.keys])
    else:
        print_table(f"trusted keys ({trusted.path})", ["name", "keyid"],
                    [[k.name, k.keyid[:16]] for k in trusted.keys])
