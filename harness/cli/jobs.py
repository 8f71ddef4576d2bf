"""`rocobench jobs`: the Jobs `dispatch` started, their status, failed logs, and retries."""

from __future__ import annotations

import argparse
import sys

from harness.cli.common import CliError, bounded_float, bounded_int
from harness.specs import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "jobs",
        help="list the Hugging Face Jobs `dispatch` started; --watch, --retry",
        description="List the Jobs `rocobench dispatch` started (found by their labels) with "
        "their status; a failed Job shows the tail of its logs. --watch polls until every Job "
        "has ended; --retry relaunches failed Jobs for the runs their dataset still lacks (each "
        "failed Job once; runs finished meanwhile are not redone). Exit 1 when a Job failed and "
        "--retry was not given.",
    )
    p.add_argument("--dispatch", metavar="LABEL", help="only this dispatch (default: all)")
    p.add_argument("--watch", action="store_true", help="poll until every Job has ended")
    p.add_argument(
        "--interval",
        type=bounded_float(0, 86400),
        default=30.0,
        help="seconds between polls (default 30), e.g. --interval 60",
    )
    p.add_argument("--retry", action="store_true", help="relaunch the failed Jobs")
    p.add_argument(
        "--log-lines",
        type=bounded_int(0, 10_000),
        default=20,
        help="log lines shown per failed Job (default 20), e.g. --log-lines 100",
    )
    p.add_argument("--namespace", help="user or organisation (default: yours)")
    p.add_argument("--source-repo", metavar="URL", help="git URL retried Jobs clone")
    p.add_argument("--revision", metavar="SHA", help="commit retried Jobs run")
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT)")
    p.set_defaults(func=jobs)


def jobs(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from harness.cli.dispatch import offline
    from harness.scale import jobs as hfjobs
    from harness.scale.jobs_cost import load_prices
    from leaderboard.publish import make_api, redact

    def say(line: str) -> None:
        print(redact(line))

    api = make_api(args.endpoint)
    try:
        if args.watch:
            rows = hfjobs.watch(
                api, dispatch=args.dispatch, namespace=args.namespace,
                interval_s=args.interval, log=say,
            )  # fmt: skip
        else:
            rows = hfjobs.list_dispatched(api, dispatch=args.dispatch, namespace=args.namespace)
            for line in hfjobs.format_rows(rows):
                say(line)
        if not rows:
            print("no Jobs from `rocobench dispatch` found", file=sys.stderr)
            return 0
        failed = [r for r in rows if r.stage in hfjobs.FAILED_STAGES]
        for row in failed:
            say(f"--- {row.job_id} ({row.stage}): last log lines")
            for line in hfjobs.log_tail(
                api, row.job_id, lines=args.log_lines, namespace=args.namespace
            ):
                say(f"  {line}")
        if args.retry and failed:
            source = hfjobs.local_source(args.source_repo, args.revision)
            outcome = hfjobs.retry_failed(
                api, rows, load_task=catalog.task, load_variant=catalog.variant,
                prices=load_prices(api, offline=offline()), source=source,
                namespace=args.namespace, offline=offline(), log=say,
            )  # fmt: skip
            for job_id, variant, seed in outcome.finished_meanwhile:
                say(f"{job_id}: {variant} seed {seed} finished meanwhile: not redone")
            for job_id in outcome.skipped:
                say(f"{job_id}: already retried")
            say(f"{len(outcome.relaunched)} Jobs relaunched")
        return 1 if failed and not args.retry else 0
    except OfflineModeIsEnabled:
        raise CliError("HF_HUB_OFFLINE is set: unset it to reach the Hub") from None
    except hfjobs.DispatchError as err:
        raise CliError(redact(str(err))) from None
    except HfHubHTTPError as err:
        raise CliError(f"the Hub refused: {redact(str(err)).splitlines()[0]}") from None
