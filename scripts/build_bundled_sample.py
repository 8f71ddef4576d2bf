"""Build the bundled offline ROCOv2 sample (`tasks/data/rocov2_sample`) from its copied sources.

The sample has the layout and columns of the Hugging Face dataset `eltorio/ROCOv2-radiology`
(`image`, `image_id`, `caption`, `cui`) plus a `modality` label, so the harness can run
end-to-end offline. Captions and concepts are real; pictures are synthetic
(`harness.data.synthetic_images`), drawn from the modality label.

Splits (all choices deterministic):

- ``test``: the first 64 ROCOv2 test-sample rows in id order whose caption is not blank.
- ``validation``: the remaining ROCOv2 test-sample rows.
- ``train``: the first 400 ROCO v1 rows in id order whose licence is exactly ``CC BY`` or
  ``CC0`` and whose caption is not blank (other licences may not be redistributed here).

Columns: captions are verbatim (quirks kept: cleaning is the task's job). ``cui`` holds the
ROCOv2 manual concepts, as on the Hub; for ROCO v1 rows it holds ROCO v1's own (automatically
extracted) CUIs from ``cuis.txt``.

Modality: a ROCOv2 row takes it from its manual modality CUI (see `MODALITY_CUIS`; the names are
checked against ``cui_mapping.csv`` at build time). Rows without one (all ROCO v1 rows, and the
one ROCOv2 row with no manual concepts) use the keyword rule `caption_modality`: every pattern
of `KEYWORD_RULES` is searched in the caption and the match that starts first wins (ties: the
longer match, then the table order), so "CT angiography" is CT and "MR angiography" is MRI,
which is how ROCOv2's manual concepts label them. The terms, by modality:

- ``ct``: CT (also HRCT, MDCT, CECT, CBCT, CTA, C.T, lower-case "ct"), computed / computer
  tomography, cone-beam, TDM / tomodensitometry.
- ``mri``: MRI, MR, MRA, MRCP, CMR, IRM, magnetic resonance, T1/T2-weighted (T1W, T2WI, ...),
  T1/T2 followed by a sequence or plane word, FLAIR, DWI, STIR, diffusion-, susceptibility- or
  proton-density-weighted (PDW), spin / gradient echo, echo planar, gadolinium, Tesla.
- ``ultrasound``: ultrasound / ultrasonography, sonography, US, USG, EUS, IOUS, TTE, TEE, echo,
  echography / échographie, echocardiography, (hyper/hypo/an)echoic, echogenic, Doppler,
  elastography, transthoracic, transoesophageal, parasternal, subcostal, suprasternal,
  apical N-chamber views.
- ``xray``: x-ray / X ray, radiograph (also radio-graph), plain film, chest film, roentgen,
  CXR, KUB, OPG, IOPA, HSG, orthopantomogram, panoramic, panorex, cephalogram, mammogram,
  fluoroscopy, barium, contrast studies (oesophago-, uro-, cysto-, urethro-, hysterosalpingo-,
  sialo-, fistulo-, myelo-, cholangio-graphy), ERCP, tomosynthesis, periapical, bitewing,
  radiolucent / radiopaque, AP / PA view.
- ``angiography``: angiography / angiogram, arteriography, venography, aortography,
  portography, phlebography, DSA, digital subtraction, cardiac / coronary / selective
  catheterisation.
- ``other``: PET, SPECT, scintigraphy, bone scan, FDG, optical coherence tomography / OCT,
  photograph, microscopy, histology; and any caption that matches nothing.

Rebuild with ``python scripts/build_bundled_sample.py [--out DIR]`` (reads the copies in
``tasks/data/rocov2_sample/source/``); ``--copy-sources-from DIR`` first refreshes those copies from
the upstream files (see `copy_sources`).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.data.synthetic_images import MODALITIES, draw
from harness.paths import TASKS_DIR

if TYPE_CHECKING:
    import datasets

SAMPLE_DIR = TASKS_DIR / "data" / "rocov2_sample"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
COLUMNS: tuple[str, ...] = ("image", "image_id", "caption", "cui", "modality")
TEST_SIZE = 64
TRAIN_SIZE = 400
ALLOWED_LICENCES: frozenset[str] = frozenset({"CC BY", "CC0"})  # exact strings of licences.txt

# Source files as named in the upstream folders (layout of the shared data folder).
ROCOV2_CAPTIONS = "rocov2_test_sample/test_captions_first177.csv"
ROCOV2_MANUAL = "rocov2_test_sample/test_concepts_manual_first177.csv"
ROCOV2_CUI_MAP = "rocov2_test_sample/cui_mapping.csv"
ROCO_CAPTIONS = "roco_v1_test/captions.txt"
ROCO_CUIS = "roco_v1_test/cuis.txt"
ROCO_LICENCES = "roco_v1_test/licences.txt"
# Copied byte-exact into source/. captions.txt and cuis.txt are not: most of their rows carry
# licences that forbid redistribution here, so source/ keeps only the lines of the rows used
# (verbatim, in upstream order) under the names of `ROCO_EXTRACTS`.
EXACT_COPIES: tuple[str, ...] = (ROCOV2_CAPTIONS, ROCOV2_MANUAL, ROCOV2_CUI_MAP, ROCO_LICENCES)
ROCO_EXTRACTS: dict[str, str] = {
    ROCO_CAPTIONS: "roco_v1_test/captions_used.txt",
    ROCO_CUIS: "roco_v1_test/cuis_used.txt",
}

# ROCOv2 manual modality concepts -> (canonical name in cui_mapping.csv, our label).
MODALITY_CUIS: dict[str, tuple[str, str]] = {
    "C0040405": ("X-Ray Computed Tomography", "ct"),
    "C0024485": ("Magnetic Resonance Imaging", "mri"),
    "C1306645": ("Plain x-ray", "xray"),
    "C0041618": ("Ultrasonography", "ultrasound"),
    "C0002978": ("angiogram", "angiography"),
    "C0032743": ("Positron-Emission Tomography", "other"),
}

# (modality, pattern); case-sensitive unless inside (?i:...) so that "CT", "MR", "US" do not
# match ordinary words ("Mr", "us").
KEYWORD_RULES: tuple[tuple[str, str], ...] = (
    (
        "ct",
        r"\b(?:HR|MD|CE|NC|CB)?CTA?s?\b|\bC\.T\b|\bTDM\b|(?i:\bct\b|comput(?:ed|erized"
        r"|erised|er)[- ]tomogra|cone[- ]beam|tomodensitom)",
    ),
    (
        "mri",
        r"\bMR(?:I|A|CP)?s?\b|\bCMR\b|\bIRM\b|\bT[12](?:-?WI?|[- ](?i:weighted))\b|\bFLAIR\b"
        r"|\bDWI\b|\bSTIR\b|\bT[12][- ](?i:VIBE|sequence|image|coronal|axial|sagittal|fat"
        r"|hyper|hypo|signal)|(?i:\bmri\b|magnetic resonance|diffusion[- ]weighted"
        r"|susceptibility[- ]weighted|proton[- ]density|spin[- ]echo|gradient[- ]echo"
        r"|echo[- ]planar|gadolinium|tesla)|\bPDW",
    ),
    (
        "ultrasound",
        r"\bUSG?\b|\bEUS\b|\bIOUS\b|\bTTE\b|\bTEE\b|(?i:ultraso|sonogra|\becho\b"
        r"|[eé]chogra|echocardiogra|\w*echo(?:ic|gen)|doppler|elastogra|transthoracic"
        r"|trans-?o?esophageal|parasternal|subcostal|suprasternal"
        r"|apical (?:two|three|four|five|[2-5])[- ]chamber)",
    ),
    (
        "xray",
        r"\bCXR\b|\bKUB\b|\bOPG\b|\bIOPA\b|\bHSG\b|\bERCP\b|\b(?:AP|PA) (?i:view|projection)"
        r"|(?i:x[- ]?rays?\b|radio-?gra(?:ph|m)|plain film|chest film|roentgen|orthopant"
        r"|panoram|panorex|cephalogra|mammogra|fluorosco|barium|o?esophagogra|urogra"
        r"|cystogra|urethrogra|hysterosalpingogra|sialogra|fistulogra|myelogra"
        r"|cholangiogra|tomosynthesis|periapical|bitewing|radiolucen|radiopa)",
    ),
    (
        "angiography",
        r"\bDSA\b|(?i:angiogra|arteriogra|venogra|aortogra|portogra|phlebogra"
        r"|digital(?:ly)? subtract|(?:cardiac|coronary|selective) catheteri)",
    ),
    (
        "other",
        r"\bPET\b|\bSPECT\b|\bFDG\b|\bOCT\b|(?i:scintigra|bone scan|optical coherence"
        r"|photograph|microscop|histolog)",
    ),
)
_KEYWORD_RES = tuple((modality, re.compile(pattern)) for modality, pattern in KEYWORD_RULES)


def caption_modality(caption: str) -> str:
    """The modality a caption names first (see the module docstring); "other" if none."""
    best: tuple[int, int, int, str] | None = None
    for order, (modality, regex) in enumerate(_KEYWORD_RES):
        match = regex.search(caption)
        if match:
            candidate = (match.start(), -(match.end() - match.start()), order, modality)
            if best is None or candidate < best:
                best = candidate
    return best[3] if best else "other"


def _read_text(path: Path) -> str:
    # newline="" keeps the CRLF / stray characters exactly as in the source.
    with path.open(encoding="utf-8", newline="") as f:
        return f.read()


def _csv_rows(path: Path, header: list[str]) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(_read_text(path), newline="")))
    if not rows or rows[0] != header:
        raise ValueError(f"{path}: expected header {header}, got {rows[:1]}")
    return rows[1:]


def _tab_rows(path: Path) -> list[list[str]]:
    # split("\n"), not splitlines(): captions may contain other Unicode line breaks.
    return [line.split("\t") for line in _read_text(path).split("\n") if line]


def _roco_number(image_id: str) -> int:
    return int(image_id.rsplit("_", 1)[1])


def _check_cui_names(source_dir: Path) -> None:
    names = dict(_csv_rows(source_dir / ROCOV2_CUI_MAP, ["CUI", "Canonical name"]))
    for cui, (name, _) in MODALITY_CUIS.items():
        if names.get(cui) != name:
            raise ValueError(f"{ROCOV2_CUI_MAP}: {cui} is {names.get(cui)!r}, expected {name!r}")


def _rocov2_rows(source_dir: Path) -> list[dict]:
    captions = _csv_rows(source_dir / ROCOV2_CAPTIONS, ["ID", "Caption"])
    manual = dict(_csv_rows(source_dir / ROCOV2_MANUAL, ["ID", "CUIs"]))
    rows = []
    for image_id, caption in sorted(captions):
        cuis = [c for c in manual.get(image_id, "").split(";") if c]
        labels = [MODALITY_CUIS[c][1] for c in cuis if c in MODALITY_CUIS]
        modality = labels[0] if labels else caption_modality(caption)
        rows.append({"image_id": image_id, "caption": caption, "cui": cuis, "modality": modality})
    return rows


def roco_v1_licences(source_dir: Path) -> dict[str, tuple[str, str]]:
    """ROCO id -> (PMC_ID field, licence) as written in licences.txt."""
    rows = _csv_rows(source_dir / ROCO_LICENCES, ["ROCO_ID", "PMC_ID", "CC"])
    return {roco_id: (pmc, licence) for roco_id, pmc, licence in rows}


def _select_roco_v1(source_dir: Path, captions_name: str) -> list[tuple[str, str]]:
    """(id, caption) of the train rows: first TRAIN_SIZE allowed, non-blank, in id order."""
    licences = roco_v1_licences(source_dir)
    pairs = sorted(
        ((parts[0], parts[1]) for parts in _tab_rows(source_dir / captions_name)),
        key=lambda pair: _roco_number(pair[0]),
    )
    chosen = [
        (image_id, caption)
        for image_id, caption in pairs
        if licences[image_id][1] in ALLOWED_LICENCES and caption.strip()
    ]
    return chosen[:TRAIN_SIZE]


def _roco_v1_rows(source_dir: Path) -> list[dict]:
    cuis_path = source_dir / ROCO_EXTRACTS[ROCO_CUIS]
    cuis = {parts[0]: [c for c in parts[1:] if c] for parts in _tab_rows(cuis_path)}
    return [
        {
            "image_id": image_id,
            "caption": caption,
            "cui": cuis.get(image_id, []),
            "modality": caption_modality(caption),
        }
        for image_id, caption in _select_roco_v1(source_dir, ROCO_EXTRACTS[ROCO_CAPTIONS])
    ]


def build_rows(source_dir: Path) -> dict[str, list[dict]]:
    """Rows per split (keys image_id, caption, cui, modality), before any image is drawn."""
    _check_cui_names(source_dir)
    rocov2 = [r for r in _rocov2_rows(source_dir) if r["caption"].strip()]
    return {
        "train": _roco_v1_rows(source_dir),
        "validation": rocov2[TEST_SIZE:],
        "test": rocov2[:TEST_SIZE],
    }


def attribution_lines(source_dir: Path, train_rows: Iterable[dict]) -> list[str]:
    """ATTRIBUTION.tsv: one line per redistributed ROCO v1 caption, with its PMC source."""
    licences = roco_v1_licences(source_dir)
    lines = ["image_id\tpmc_id\tfigure\tlicence\tarticle_url"]
    for row in train_rows:
        pmc_field, licence = licences[row["image_id"]]
        pmc_id, _, figure = pmc_field.partition("_")
        url = f"https://www.ncbi.nlm.nih.gov/pmc/articles/{pmc_id}/"
        lines.append(f"{row['image_id']}\t{pmc_id}\t{figure}\t{licence}\t{url}")
    return lines


def encode_png(modality: str, image_id: str) -> bytes:
    """The row's synthetic picture as PNG (optimize=True: ~30 % smaller files)."""
    buffer = io.BytesIO()
    draw(modality, image_id).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def features() -> datasets.Features:
    import datasets  # lazily: it is slow to import and build_rows does not need it

    return datasets.Features(
        {
            "image": datasets.Image(),
            "image_id": datasets.Value("string"),
            "caption": datasets.Value("string"),
            "cui": datasets.List(datasets.Value("string")),
            "modality": datasets.Value("string"),
        }
    )


def write_dataset(out_dir: Path = SAMPLE_DIR, source_dir: Path | None = None) -> dict[str, int]:
    """Write data/{split}-00000-of-00001.parquet and ATTRIBUTION.tsv; return rows per split."""
    import datasets

    source_dir = SAMPLE_DIR / "source" if source_dir is None else source_dir
    splits = build_rows(source_dir)
    for split, rows in splits.items():
        columns: dict[str, list] = {name: [] for name in COLUMNS}
        for row in rows:
            png = encode_png(row["modality"], row["image_id"])
            columns["image"].append({"bytes": png, "path": None})
            for name in COLUMNS[1:]:
                columns[name].append(row[name])
        dataset = datasets.Dataset.from_dict(columns, features=features())
        target = out_dir / "data" / f"{split}-00000-of-00001.parquet"
        _atomic_write(target, lambda tmp, ds=dataset: ds.to_parquet(tmp))
    text = "\n".join(attribution_lines(source_dir, splits["train"])) + "\n"
    _atomic_write(out_dir / "ATTRIBUTION.tsv", lambda tmp: Path(tmp).write_text(text, "utf-8"))
    return {split: len(rows) for split, rows in splits.items()}


def copy_sources(from_dir: Path, source_dir: Path) -> None:
    """Fill source/ from the upstream files in `from_dir` (laid out like the shared data folder).

    `EXACT_COPIES` are copied byte-exact; of captions.txt and cuis.txt only the lines of the
    selected train rows are kept, each line verbatim.
    """
    for name in EXACT_COPIES:
        target = source_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(from_dir / name, target)  # licences.txt is needed for the selection
    used = {image_id for image_id, _ in _select_roco_v1(from_dir, ROCO_CAPTIONS)}
    for upstream, extract in ROCO_EXTRACTS.items():
        lines = _read_text(from_dir / upstream).split("\n")
        kept = [line for line in lines if line and line.split("\t", 1)[0] in used]
        text = "".join(line + "\n" for line in kept)
        with (source_dir / extract).open("w", encoding="utf-8", newline="") as f:
            f.write(text)


def modality_counts(rows: Iterable[dict]) -> dict[str, int]:
    counts = Counter(row["modality"] for row in rows)
    return {m: counts[m] for m in MODALITIES if counts[m]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/build_bundled_sample.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=SAMPLE_DIR,
        help="dataset folder to write (default: %(default)s)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=SAMPLE_DIR / "source",
        help="folder with the source copies (default: %(default)s)",
    )
    parser.add_argument(
        "--copy-sources-from",
        type=Path,
        metavar="DIR",
        help="first refresh --source from the upstream files in DIR (see copy_sources)",
    )
    args = parser.parse_args(argv)
    import datasets

    datasets.disable_progress_bars()
    if args.copy_sources_from is not None:
        copy_sources(args.copy_sources_from, args.source)
    counts = write_dataset(args.out, args.source)
    splits = build_rows(args.source)
    for split in SPLITS:
        dist = ", ".join(f"{m} {n}" for m, n in modality_counts(splits[split]).items())
        print(f"{split:<10} {counts[split]:>4} rows  ({dist})")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
