"""Offline clinical concepts: UMLS concepts and imaging modality named in a caption.

A dictionary matcher over ROCOv2's CUI map (`cui_mapping.csv`, 1,935 CUIs with canonical
names), run after the task's text cleaning. Text and dictionary terms go through the same
tokeniser: lowercase, every digit run -> "number" (so ImageCLEF-normalised text matches too),
words = runs of ASCII letters and digits. Terms are the canonical names plus these variants:

- case: "Chest" ~ "chest" (captions are not title-cased);
- hyphens joined: "X-ray" ~ "xray" (ImageCLEF normalisation deletes hyphens);
- plural / singular of the last word: "Veins" ~ "vein", "Stent" ~ "stents";
- comma inversion: "Aneurysm, Ascending Aorta" ~ "ascending aorta aneurysm" (UMLS inverted
  names); "Stent, device" ~ "stent";
- SNOMED wrappers dropped: "Structure of vertebral artery" ~ "vertebral artery", a trailing
  "(body structure)" or "(disorder)" (naming conventions captions never use);
- `ABBREVIATIONS`: abbreviations and synonyms radiology captions use ("CT", "MRI", "MR", "US",
  "AP", "skull" ...), each onto one CUI of the map.

A canonical name always wins over a variant of another concept. Matching is longest-match-first
over word tokens: every dictionary term found is a candidate, the longest are taken first and a
candidate overlapping a taken one is dropped (so "magnetic resonance angiography" is one concept,
not MRI plus angiogram). No negation handling: "no fracture" names fracture.

The modality is found the same way with `MODALITY_TERMS`, a small synonym table onto the
modality CUIs of ROCOv2's manual concepts (`MODALITIES`); the first modality term in the caption
wins.

Reference concepts: a task may carry the dataset's own CUIs (`doc_to_concepts`); the run
pipeline hands them to the metrics with `reference_concepts(...)`. Without them the extractor
runs on the reference caption. The metric records which (`reference_concepts` detail).
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.paths import REPO_ROOT

CUI_MAP = REPO_ROOT / "tasks/data/rocov2_sample/source/rocov2_test_sample/cui_mapping.csv"
MAX_TERM_WORDS = 12  # longest dictionary term considered, in words
# Recorded with the scores; bump it when a table or a rule below changes the matches.
EXTRACTOR = "rocov2-cui-dict/1"

# Abbreviations and synonyms radiology captions use for concepts of the map: term -> CUI.
ABBREVIATIONS: dict[str, str] = {
    "ct": "C0040405",  # X-Ray Computed Tomography
    "computed tomography": "C0040405",
    "computerized tomography": "C0040405",
    "computerised tomography": "C0040405",
    "mri": "C0024485",  # Magnetic Resonance Imaging
    "mr": "C0024485",
    "mr imaging": "C0024485",
    "magnetic resonance": "C0024485",
    "mra": "C0243032",  # Magnetic Resonance Angiography
    "mr angiography": "C0243032",
    "us": "C0041618",  # Ultrasonography
    "ultrasound": "C0041618",
    "sonography": "C0041618",
    "usg": "C0041618",
    "x ray": "C1306645",  # Plain x-ray
    "xray": "C1306645",
    "radiograph": "C1306645",
    "radiography": "C1306645",
    "plain radiograph": "C1306645",
    "plain film": "C1306645",
    "angiography": "C0002978",  # angiogram
    "arteriogram": "C0002978",
    "arteriography": "C0002978",
    "dsa": "C0002978",
    "digital subtraction angiography": "C0002978",
    "pet": "C0032743",  # Positron-Emission Tomography
    "positron emission tomography": "C0032743",
    "pet ct": "C1699633",  # PET/CT scan
    "spect": "C0040399",  # Tomography, Emission-Computed, Single-Photon
    "scintigraphy": "C0034606",  # Radionuclide Imaging
    "nuclear medicine": "C0034606",
    "echocardiogram": "C0013516",  # Echocardiography
    "ap": "C1999039",  # Anterior-Posterior
    "anteroposterior": "C1999039",
    "pa": "C1996865",  # Postero-Anterior
    "posteroanterior": "C1996865",
    "skull": "C0037303",  # Bone structure of cranium
    "cranial": "C0037303",
    "spine": "C0037949",  # Vertebral column
    "spinal column": "C0037949",
    "abdominal": "C0000726",  # Abdomen
    "pelvic": "C0030797",  # Pelvis
    "thorax": "C0817096",  # Chest
    "thoracic": "C0817096",
    "lower limb": "C0023216",  # Lower Extremity
    "upper limb": "C1140618",  # Upper Extremity
}


@dataclass(frozen=True)
class Modality:
    label: str
    cui: str  # the manual-concept CUI ROCOv2 uses for it
    name: str  # its canonical name in cui_mapping.csv


MODALITIES: tuple[Modality, ...] = (
    Modality("ct", "C0040405", "X-Ray Computed Tomography"),
    Modality("mri", "C0024485", "Magnetic Resonance Imaging"),
    Modality("xray", "C1306645", "Plain x-ray"),
    Modality("ultrasound", "C0041618", "Ultrasonography"),
    Modality("angiography", "C0002978", "angiogram"),
    Modality("pet", "C0032743", "Positron-Emission Tomography"),
    Modality("nuclear", "C0034606", "Radionuclide Imaging"),
)
MODALITY_BY_CUI = {m.cui: m.label for m in MODALITIES}
MODALITY_LABELS = tuple(m.label for m in MODALITIES)

# Modality synonyms (tokenised like captions). A combined examination is the modality ROCOv2's
# manual concepts give it: CT angiography is CT, MR angiography MRI, PET/CT PET.
MODALITY_TERMS: dict[str, tuple[str, ...]] = {
    "ct": (
        "ct", "cts", "ct scan", "computed tomography", "computerized tomography",
        "computerised tomography", "x ray computed tomography", "cat scan", "cect", "ncct",
        "hrct", "mdct", "cbct", "cone beam computed tomography", "computer tomography", "cta",
        "ct angiography", "ct angiogram",
    ),
    "mri": (
        "mri", "mr", "mr imaging", "magnetic resonance", "magnetic resonance imaging", "mra",
        "mr angiography", "mr angiogram", "magnetic resonance angiography", "flair",
        "t1 weighted", "t2 weighted", "diffusion weighted", "mrcp",
    ),
    "xray": (
        "x ray", "x rays", "radiograph", "radiographs", "radiography", "radiographic",
        "plain film", "plain x ray", "cxr", "roentgenogram", "orthopantomogram", "opg",
        "orthopantomography", "panoramic radiograph", "mammogram", "mammography",
        "fluoroscopy", "fluoroscopic",
    ),
    "ultrasound": (
        "ultrasound", "ultrasonography", "ultrasonographic", "sonography", "sonographic",
        "sonogram", "us", "usg", "echography", "echocardiography", "echocardiogram", "doppler",
        "tte", "tee",
    ),
    "angiography": (
        "angiogram", "angiograms", "angiography", "angiographic", "arteriogram",
        "arteriography", "venogram", "venography", "dsa", "digital subtraction angiography",
        "digitally subtracted angiogram", "aortogram", "aortography", "portography",
    ),
    "pet": (
        "pet", "pet ct", "pet scan", "positron emission tomography", "fdg", "fdg pet",
        "positron emission tomography computed tomography",
    ),
    "nuclear": (
        "scintigraphy", "scintigram", "scintigraphic", "bone scan", "spect", "spect ct",
        "single photon emission computed tomography", "radionuclide imaging",
        "nuclear medicine",
    ),
}  # fmt: skip

# ROCOv2's manually curated concepts (modality, body region, direction) seen in the bundled
# sample, plus the nuclear-medicine modality: the vocabulary of `concept_f1`'s "manual" setting.
MANUAL_CUIS: dict[str, str] = {
    "C0040405": "X-Ray Computed Tomography",
    "C1306645": "Plain x-ray",
    "C0024485": "Magnetic Resonance Imaging",
    "C0041618": "Ultrasonography",
    "C0002978": "angiogram",
    "C0032743": "Positron-Emission Tomography",
    "C0034606": "Radionuclide Imaging",
    "C1999039": "Anterior-Posterior",
    "C1996865": "Postero-Anterior",
    "C0205129": "Sagittal",
    "C0817096": "Chest",
    "C0000726": "Abdomen",
    "C0030797": "Pelvis",
    "C0023216": "Lower Extremity",
    "C1140618": "Upper Extremity",
    "C0037303": "Bone structure of cranium",
    "C0037949": "Vertebral column",
}

_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"[a-z0-9]+")
_SEMANTIC_TAG = re.compile(r"\s*\([^()]*\)\s*$")  # SNOMED "(body structure)", "(disorder)" ...
_WRAPPERS = (re.compile(r"^(structure of|entire|bone structure of) "), re.compile(r" structure$"))
_NOT_PLURAL = ("ss", "us", "is", "as")


def tokens(text: str) -> tuple[str, ...]:
    """Words of `text`: lowercased, digit runs -> "number", runs of [a-z0-9]."""
    return tuple(_WORD.findall(_DIGITS.sub("number", text.lower())))


def _number_forms(words: tuple[str, ...]) -> set[tuple[str, ...]]:
    last = words[-1]
    if len(last) < 3 or not last.isalpha():
        return set()
    forms = set()
    if last.endswith("ies"):
        forms.add(last[:-3] + "y")
    elif last.endswith("s") and not last.endswith(_NOT_PLURAL):
        forms.add(last[:-1])
    if last.endswith("y") and last[-2:-1] not in "aeiou":
        forms.add(last[:-1] + "ies")
    elif last.endswith(("s", "x", "ch", "sh")):
        forms.add(last + "es")
    else:
        forms.add(last + "s")
    return {(*words[:-1], f) for f in forms}


def name_variants(name: str) -> set[tuple[str, ...]]:
    """The token sequences a canonical name is matched as (the name's own first)."""
    base = name.lower().strip()
    texts = {base}
    untagged = _SEMANTIC_TAG.sub("", base)
    texts.add(untagged)
    parts = [p.strip() for p in untagged.split(",")]
    if len(parts) == 2 and all(parts):
        texts.add(f"{parts[1]} {parts[0]}")
        if parts[1] in ("device", "nos", "unspecified"):
            texts.add(parts[0])
    for text in list(texts):
        for wrapper in _WRAPPERS:
            texts.add(wrapper.sub("", text))
    forms: set[tuple[str, ...]] = set()
    for text in texts:
        forms.add(tokens(text))
        forms.add(tokens(text.replace("-", "")))  # "x-ray" after ImageCLEF normalisation
    forms.discard(())
    for form in list(forms):
        forms |= _number_forms(form)
    return forms


class Matcher:
    """Longest-match-first dictionary matcher over word tokens."""

    def __init__(self, terms: dict[tuple[str, ...], frozenset[str]]) -> None:
        self.terms = terms
        self.longest = min(max((len(t) for t in terms), default=1), MAX_TERM_WORDS)

    def matches(self, text: str) -> list[tuple[int, int, frozenset[str]]]:
        """(start, end, values) of the matches, in text order, none overlapping."""
        words = tokens(text)
        found = [
            (start, end)
            for start in range(len(words))
            for end in range(start + 1, min(start + self.longest, len(words)) + 1)
            if words[start:end] in self.terms
        ]
        found.sort(key=lambda span: (span[0] - span[1], span[0]))  # longest, then leftmost
        taken: list[tuple[int, int]] = []
        for start, end in found:
            if all(end <= s or start >= e for s, e in taken):
                taken.append((start, end))
        return [(s, e, self.terms[words[s:e]]) for s, e in sorted(taken)]


def read_cui_map(path: Path = CUI_MAP) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if rows[0] != ["CUI", "Canonical name"]:
        raise ValueError(f"{path}: unexpected header {rows[0]}")
    return {cui: name for cui, name in rows[1:]}


@functools.cache
def concept_matcher() -> Matcher:
    """The concept dictionary, built once per process (about 0.1 s)."""
    names = read_cui_map()
    missing = sorted(set(ABBREVIATIONS.values()) - set(names))
    if missing:
        raise ValueError(f"ABBREVIATIONS name CUIs not in {CUI_MAP.name}: {missing}")
    canonical: dict[tuple[str, ...], set[str]] = {}
    variants: dict[tuple[str, ...], set[str]] = {}
    for cui, name in names.items():
        own = tokens(name)
        if own:
            canonical.setdefault(own, set()).add(cui)
        for form in name_variants(name) - {own}:
            variants.setdefault(form, set()).add(cui)
    for term, cui in ABBREVIATIONS.items():
        variants.setdefault(tokens(term), set()).add(cui)
    terms = {t: frozenset(c) for t, c in variants.items() if t not in canonical}
    terms |= {t: frozenset(c) for t, c in canonical.items()}  # a canonical name wins
    return Matcher(terms)


@functools.cache
def modality_matcher() -> Matcher:
    labels = set(MODALITY_LABELS)
    if set(MODALITY_TERMS) != labels:
        raise ValueError("MODALITY_TERMS and MODALITIES disagree")
    # each term also hyphen-joined ("x ray" ~ "xray"), as for concept names
    return Matcher(
        {
            form: frozenset({label})
            for label, terms in MODALITY_TERMS.items()
            for term in terms
            for form in (tokens(term), ("".join(tokens(term)),))
        }
    )


def extract_concepts(text: str) -> frozenset[str]:
    """The CUIs of the map that `text` names."""
    return frozenset(c for _, _, cuis in concept_matcher().matches(text) for c in cuis)


def extract_modality(text: str) -> str | None:
    """The modality label of the first modality term in `text`, None if it names none."""
    found = modality_matcher().matches(text)
    return next(iter(found[0][2])) if found else None


def modality_of_concepts(cuis: Sequence[str]) -> str | None:
    """The modality of the first modality CUI among `cuis` (a row's manual concepts)."""
    return next((MODALITY_BY_CUI[c] for c in cuis if c in MODALITY_BY_CUI), None)


def source_label(given: Sequence[object | None]) -> str:
    """Where the reference concepts came from: "dataset", "extracted" or "mixed"."""
    kinds = {c is not None for c in given}
    return "mixed" if len(kinds) > 1 else "dataset" if kinds == {True} else "extracted"


def confusion_json(pairs: Sequence[tuple[str, str]]) -> str:
    """Confusion counts {reference: {predicted: n}} as compact, sorted JSON (a record detail)."""
    table: dict[str, dict[str, int]] = {}
    for ref, pred in pairs:
        row = table.setdefault(ref, {})
        row[pred] = row.get(pred, 0) + 1
    return json.dumps(table, sort_keys=True, separators=(",", ":"))
