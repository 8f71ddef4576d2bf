"""Rebuild pairs.jsonl and ATTRIBUTION.tsv from ROCO v1's radiology test files.

    python tests/data/roco_v1_unseen/build.py /path/to/roco-dataset/data/test/radiology

Takes the first 400 rows, in id order, after ROCO_09751 (the last ROCO v1 row of the bundled
sample) whose licence is exactly `CC BY`, and pairs them greedily by keyword overlap (Jaccard
of ROCO's keyword lists, most similar pair first, ties by id), so scores are neither 0 nor 1.
Captions are verbatim (leading spaces, Unicode dashes and quotes kept). Deterministic.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAST_SAMPLE_ROW = "ROCO_09751"
N_ROWS = 400


def read_tsv(path: Path) -> dict[str, list[str]]:
    rows = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            rows[fields[0]] = fields[1:]
    return rows


def main(source: Path) -> None:
    captions = read_tsv(source / "captions.txt")
    keywords = read_tsv(source / "keywords.txt")
    licences = {}
    with (source / "licences.txt").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            roco_id, figure, licence = line.rstrip("\n").split(",", 2)
            licences[roco_id] = (figure, licence)
    chosen = [
        i
        for i in sorted(captions)
        if i > LAST_SAMPLE_ROW
        and licences.get(i, ("", ""))[1] == "CC BY"
        and captions[i][0].strip()
    ][:N_ROWS]
    words = {i: {k for k in keywords.get(i, []) if k} for i in chosen}

    def jaccard(a: str, b: str) -> float:
        union = words[a] | words[b]
        return len(words[a] & words[b]) / len(union) if union else 0.0

    candidates = sorted(itertools.combinations(chosen, 2), key=lambda ab: (-jaccard(*ab), ab))
    used: set[str] = set()
    pairs = []
    for a, b in candidates:
        if a not in used and b not in used:
            used |= {a, b}
            pairs.append((a, b))
    pairs.sort()
    with (HERE / "pairs.jsonl").open("w", encoding="utf-8") as fh:
        for ref_id, pred_id in pairs:
            row = {
                "id": ref_id,
                "prediction": captions[pred_id][0],
                "reference": captions[ref_id][0],
                "prediction_from": pred_id,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (HERE / "ATTRIBUTION.tsv").open("w", encoding="utf-8") as fh:
        fh.write("roco_id\tpmc_id\tfigure\tlicence\tarticle_url\n")
        for i in chosen:
            figure, licence = licences[i]
            pmc, fig = figure.split("_", 1)
            url = f"https://www.ncbi.nlm.nih.gov/pmc/articles/{pmc}/"
            fh.write(f"{i}\t{pmc}\t{fig}\t{licence}\t{url}\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
