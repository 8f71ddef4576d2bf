"""`rocobench export-lm-eval`: write a task as an lm-evaluation-harness task folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.common import CliError
from harness.specs import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-lm-eval",
        help="write a task as an lm-evaluation-harness task folder",
        description="Write TASK.yaml, utils.py and the task's settings into DIR: the task for "
        "lm-eval's hf-multimodal model, with rocobench's image preprocessing, text cleaning and "
        "metrics written out on the reference libraries (rocobench need not be installed where "
        "it runs). A local dataset is referenced relative to DIR (--copy-data copies it into "
        "DIR/data/), a Hub dataset by id and revision. Run it with "
        "`lm_eval --model hf-multimodal --model_args pretrained=MODEL --include_path DIR "
        "--tasks TASK --apply_chat_template` (lm-eval is the optional extra "
        "`pip install rocobench[lmeval]`). Captions match rocobench's only under greedy "
        "decoding (do_sample: false).",
    )
    p.add_argument("task", help="task id or task file")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    p.add_argument(
        "--copy-data",
        action="store_true",
        help="copy a local dataset into DIR/data/ so that the folder is complete on its own",
    )
    p.set_defaults(func=export_lm_eval)


def export_lm_eval(args: argparse.Namespace) -> int:
    from harness.analysis.lm_eval_export import ExportError, export

    try:
        written = export(catalog.task(args.task), args.output, copy_data=args.copy_data)
    except ExportError as err:
        raise CliError(str(err)) from None
    for path in written:
        print(f"wrote {path}")
    return 0
