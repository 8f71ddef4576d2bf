"""Wall time of the commands that only read YAML, records or text, each in a fresh process.

    python benchmarks/light_commands.py [--repeat 5]

Prints the median of N runs per command and whether torch was imported. The target is under
1.5 s each on 2 cores; `tests/cli/test_light_commands.py` checks the imports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def timed(args: list[str]) -> tuple[float, bool]:
    probe = (
        "import sys; from harness.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    return elapsed, proc.stderr.strip().splitlines()[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from fixtures.site_records import fixture_records, write_all

    scratch = Path(tempfile.mkdtemp())
    write_all(scratch / "results", fixture_records())
    pairs = scratch / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"id": "a", "prediction": "CT of the chest", "reference": "chest CT"}) + "\n"
    )
    variants = sorted(str(p) for p in REPO.glob("variants/*.yaml"))
    commands = {
        "--help": ["--help"],
        "ls": ["ls"],
        "validate variants/*.yaml": ["validate", *variants],
        "render (fixture records)": ["render", str(scratch / "results"), "-o", str(scratch / "s")],
        "score (no BERTScore)": [
            "score", "--pairs", str(pairs), "--metrics", "bleu4,rouge_l,meteor,cider,concept_f1",
        ],
    }  # fmt: skip
    print(f"{'command':<28}{'median s':>10}{'min s':>8}  torch imported")
    for name, cmd in commands.items():
        runs = [timed(cmd) for _ in range(args.repeat)]
        times = [t for t, _ in runs]
        print(f"{name:<28}{statistics.median(times):>10.2f}{min(times):>8.2f}  {runs[0][1]}")


if __name__ == "__main__":
    main()
