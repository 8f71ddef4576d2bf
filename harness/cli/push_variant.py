"""`rocobench push-variant`: a built variant as a Hub model (adapter or full checkpoint)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import CliError
from harness.specs import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push-variant",
        help="upload a built variant as a Hub model loadable without rocobench",
        description="Upload VARIANT's build in the Hub's usual layout: a PEFT adapter naming its "
        "base, or a full checkpoint, with a model card (base, technique chain and settings, "
        "training data, licence, the records' scores). Weight names are checked against the "
        "base checkpoint and renamed to its convention where transformers 5 saved others.",
    )
    p.add_argument("variant", help="variant id (variants/ID.yaml) or a YAML path")
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="the model repository")
    p.add_argument(
        "--base-repo",
        metavar="ORG/NAME",
        help="the base's Hub repository when the manifest's base is not one (a twin, a local "
        "folder, or a model built here)",
    )
    p.add_argument("--base-revision", metavar="SHA", help="revision of --base-repo")
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="records whose scores go in the card (default: results/)",
    )
    p.add_argument("--leaderboard", metavar="URL", help="leaderboard link for the card")
    p.add_argument("--license", help="licence id (default: the base model's, read from the Hub)")
    p.add_argument("--dry-run", action="store_true", help="list the files; upload nothing")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT)")
    p.set_defaults(func=push_variant)


def push_variant(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from harness.models.build import ensure_built
    from harness.models.families import family_for_model_type
    from harness.models.push import PushError, manifest_snippet, plan_push, push_variant
    from harness.models.sources import BuildError
    from harness.records.store import find_records
    from leaderboard.publish import REPO_ID, make_api, redact

    for name in ("repo", "base_repo"):
        value = getattr(args, name)
        if value is not None and not REPO_ID.fullmatch(value):
            raise CliError(f"--{name.replace('_', '-')}: expected ORG/NAME, got {value!r}")
    spec = catalog.variant(args.variant)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    api = make_api(args.endpoint)
    try:
        built = ensure_built(spec, log=log)
        from transformers import AutoConfig

        family = family_for_model_type(AutoConfig.from_pretrained(built.state.location).model_type)
        records = []
        if args.results.is_dir():
            records = [r for _, r in find_records(args.results) if r.variant == spec.id]
        license = args.license or _base_license(api, spec)
        plan = plan_push(
            spec, built, repo_id=args.repo, family=family.name, records=records,
            base_repo=args.base_repo, base_revision=args.base_revision, license=license,
            leaderboard=args.leaderboard, api=api,
        )  # fmt: skip
        for line in plan.describe():
            print(line)
        if args.dry_run:
            log("dry run: nothing was uploaded")
            return 0
        commit, url = push_variant(
            api, plan, create_pr=args.create_pr, private=True if args.private else None, log=log
        )
        log(f"pushed {spec.id} to {args.repo}: {url}")
        if not args.create_pr:
            print(
                f"a manifest takes it as a prebuilt variant with:\n{manifest_snippet(plan, commit)}"
            )
    except (PushError, BuildError) as err:
        raise CliError(redact(str(err))) from None
    except HfHubHTTPError as err:
        raise CliError(f"the Hub refused: {redact(str(err)).splitlines()[0]}") from None
    return 0


def _base_license(api, spec) -> str | None:  # type: ignore[no-untyped-def]
    """The base model's licence from its Hub card; None offline or for twins."""
    if not spec.base.model or spec.base.is_local:
        return None
    try:
        info = api.model_info(spec.base.model, revision=spec.base.revision)
    except Exception:
        return None
    data = info.card_data
    return getattr(data, "license", None) if data is not None else None
