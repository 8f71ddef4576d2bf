"""`rocobench build`: build (or fetch from the cache) a variant's technique chain alone."""

from __future__ import annotations

import argparse
import time

from harness.specs import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build a variant's technique chain (QLoRA, distillation, pruning, …) and cache it",
        description="Apply a manifest's technique chain and cache the result, keyed by a hash of "
        "the manifest, the base, the training data, the teacher and the library versions. "
        "`rocobench run` builds what it needs too; this command builds alone.",
    )
    p.add_argument("variant", nargs="+", help="variant id(s) (variants/ID.yaml) or YAML paths")
    p.add_argument("--rebuild", action="store_true", help="rebuild even when cached")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=build)


def build(args: argparse.Namespace) -> int:
    from harness.models.build import ensure_built
    from harness.pipeline.runner import quiet_libraries

    specs = [catalog.variant(v) for v in args.variant]  # all validated before any work
    quiet_libraries()
    for spec in specs:
        start = time.perf_counter()
        built = ensure_built(
            spec, device=args.device, rebuild=args.rebuild, progress=not args.no_progress
        )
        where = built.folder if built.folder is not None else built.state.location
        print(f"{spec.id}: {where} ({time.perf_counter() - start:.1f} s)")
    return 0
