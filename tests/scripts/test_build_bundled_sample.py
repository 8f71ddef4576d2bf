"""The bundled offline ROCOv2 sample: loads like the Hub dataset, is reproducible from its
committed sources, has pictures that carry the modality, and redistributes only CC BY / CC0
ROCO v1 captions."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest

from harness.data.synthetic_images import MODALITIES, draw, draw_array
from harness.paths import REPO_ROOT


def _load_script() -> Any:
    """The build script lives in scripts/, outside the package: import it from its path."""
    spec = importlib.util.spec_from_file_location(
        "build_bundled_sample", REPO_ROOT / "scripts" / "build_bundled_sample.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_script = _load_script()
ALLOWED_LICENCES = _script.ALLOWED_LICENCES
ROCO_LICENCES = _script.ROCO_LICENCES
SPLITS = _script.SPLITS
build_rows = _script.build_rows
caption_modality = _script.caption_modality
roco_v1_licences = _script.roco_v1_licences


SAMPLE = Path(__file__).resolve().parents[2] / "tasks" / "data" / "rocov2_sample"
SOURCE = SAMPLE / "source"
COUNTS = {"train": 400, "validation": 111, "test": 64}
ACCURACY_FLOOR = 0.90  # nearest-centroid on 8x8 thumbnails measured 1.00 on test and validation

# sha256 of the committed source files (the byte-exact copies hash like their upstream files,
# see the dataset card), so an editor or git setting that rewrites them shows up here.
SOURCE_SHA256 = {
    "rocov2_test_sample/test_captions_first177.csv": (
        "e9594e1cb14474af5be127243cad2e57695e2e2198915c3462be98b04485cfd4"
    ),
    "rocov2_test_sample/test_concepts_manual_first177.csv": (
        "93d796366656fadfd1d6121246a62dee84edd385db0a4f910aabcb3b42faff66"
    ),
    "rocov2_test_sample/cui_mapping.csv": (
        "9b924634601bffaa34ca7be66eedc1e3bd8f4d2464cfacba33ed4f9e72263c3e"
    ),
    "roco_v1_test/licences.txt": (
        "992f037378fd7107e12c673f2d06898d852bb5c77b2d927fc336d187d2282421"
    ),
    "roco_v1_test/captions_used.txt": (
        "39ce3c7edc1bf6f886427439b64302cae6f42d0af8f64e5533095987ae648de9"
    ),
    "roco_v1_test/cuis_used.txt": (
        "053c22953d5dec58ed4dd8adab577f2502ab8a74910aef6bd8846aedcc567ad4"
    ),
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, datasets.Dataset]:
    cache = tmp_path_factory.mktemp("hf-cache")  # keep the user's HF cache untouched
    return {
        split: datasets.load_dataset(str(SAMPLE), split=split, cache_dir=str(cache))
        for split in SPLITS
    }


@pytest.fixture(scope="module")
def pixels(loaded: dict[str, datasets.Dataset]) -> dict[str, np.ndarray]:
    """Decoded images per split, (n, 224, 224, 3) uint8."""
    return {split: np.stack([np.asarray(ex["image"]) for ex in ds]) for split, ds in loaded.items()}


def test_source_copies_are_intact() -> None:
    for name, digest in SOURCE_SHA256.items():
        assert hashlib.sha256((SOURCE / name).read_bytes()).hexdigest() == digest, name


def test_loads_like_the_hub_dataset(loaded: dict[str, datasets.Dataset]) -> None:
    for split, ds in loaded.items():
        assert ds.num_rows == COUNTS[split]
        assert ds.column_names == ["image", "image_id", "caption", "cui", "modality"]
        assert isinstance(ds.features["image"], datasets.Image)
        assert ds.features["cui"] == datasets.List(datasets.Value("string"))
        assert set(ds["modality"]) <= set(MODALITIES)
        assert len(set(ds["image_id"])) == ds.num_rows
        first = ds[0]["image"]
        assert first.size == (224, 224) and first.mode == "RGB"
    assert all(i.startswith("ROCO_") for i in loaded["train"]["image_id"])
    for split in ("validation", "test"):
        assert all(i.startswith("ROCOv2_2023_test_") for i in loaded[split]["image_id"])


def test_all_images_are_224_rgb_gray(pixels: dict[str, np.ndarray]) -> None:
    for array in pixels.values():
        assert array.shape[1:] == (224, 224, 3)
        assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()


def test_rows_rebuild_exactly(loaded: dict[str, datasets.Dataset]) -> None:
    rows = build_rows(SOURCE)
    for split, ds in loaded.items():
        committed = ds.select_columns(["image_id", "caption", "cui", "modality"]).to_list()
        assert committed == rows[split], split
    # Captions are verbatim, quirks included (cleaning is the task's job).
    assert any(r["caption"].startswith(" ") for r in rows["train"])
    assert rows["test"][0]["caption"].startswith("CT chest axial view")


def test_pixels_redraw_exactly(
    loaded: dict[str, datasets.Dataset], pixels: dict[str, np.ndarray]
) -> None:
    for split, ds in loaded.items():
        for i, (image_id, modality) in enumerate(zip(ds["image_id"], ds["modality"], strict=True)):
            np.testing.assert_array_equal(
                np.asarray(draw(modality, image_id)), pixels[split][i], err_msg=image_id
            )


def _thumbnails(array: np.ndarray) -> np.ndarray:
    gray = array[..., 0].astype(np.float64) / 255.0
    return gray.reshape(len(gray), 8, 28, 8, 28).mean(axis=(2, 4)).reshape(len(gray), -1)


def test_modality_is_learnable_from_pixels(
    loaded: dict[str, datasets.Dataset], pixels: dict[str, np.ndarray]
) -> None:
    train_x, train_y = _thumbnails(pixels["train"]), np.array(loaded["train"]["modality"])
    classes = sorted(set(train_y))
    assert classes == sorted(MODALITIES)  # every modality is represented in train
    centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in classes])
    for split in ("test", "validation"):
        x, y = _thumbnails(pixels[split]), np.array(loaded[split]["modality"])
        distances = ((x[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
        accuracy = float((np.array(classes)[distances.argmin(axis=1)] == y).mean())
        majority = max(np.mean(y == c) for c in classes)
        assert accuracy >= ACCURACY_FLOOR > majority, (split, accuracy, majority)


def test_train_has_only_cc_by_or_cc0_rows(loaded: dict[str, datasets.Dataset]) -> None:
    with (SOURCE / ROCO_LICENCES).open(encoding="utf-8", newline="") as f:
        licences = {row["ROCO_ID"]: row for row in csv.DictReader(f)}
    assert {"CC BY", "CC0"} == ALLOWED_LICENCES
    train_ids = loaded["train"]["image_id"]
    assert all(licences[i]["CC"] in ALLOWED_LICENCES for i in train_ids)
    # ... and they are the first allowed rows in id order (no caption upstream is blank).
    allowed = [i for i, row in licences.items() if row["CC"] in ALLOWED_LICENCES]
    assert train_ids == sorted(allowed, key=lambda i: int(i[5:]))[: COUNTS["train"]]
    # Every redistributed ROCO v1 caption is attributed to its PMC article and licence.
    with (SAMPLE / "ATTRIBUTION.tsv").open(encoding="utf-8", newline="") as f:
        attribution = list(csv.DictReader(f, delimiter="\t"))
    assert [a["image_id"] for a in attribution] == train_ids
    upstream = roco_v1_licences(SOURCE)
    for a in attribution:
        pmc_field, licence = upstream[a["image_id"]]
        assert pmc_field == f"{a['pmc_id']}_{a['figure']}" and licence == a["licence"]
        assert a["article_url"].endswith(f"/{a['pmc_id']}/")


@pytest.mark.parametrize(
    ("caption", "modality"),
    [
        ("CT chest axial view showing a huge ascending aortic aneurysm (*).", "ct"),
        ("Coronal CT angiography of the aorta", "ct"),
        ("Axial source image from an intracranial magnetic resonance angiogram", "mri"),
        ("Axial T2 Weighted Image – subluxation.", "mri"),
        ("Digitally subtracted angiogram demonstrates active extravasation", "angiography"),
        ("Chest X-ray showing cardiomegaly", "xray"),
        ("Panoramic radiograph of the mandible", "xray"),
        ("Hypoechoic lesion in the left lobe", "ultrasound"),
        ("Echographie pelvienne. Masse kystique", "ultrasound"),
        ("The whole body F18-FDG PET/CT tomography scan", "other"),
        ("Mr. Smith was treated with us for a fracture", "other"),
    ],
)
def test_caption_modality_rule(caption: str, modality: str) -> None:
    assert caption_modality(caption) == modality


def test_draw_contract() -> None:
    first = np.asarray(draw("ct", "ROCO_00016"))
    assert np.array_equal(first, np.asarray(draw("ct", "ROCO_00016")))  # deterministic
    assert not np.array_equal(first, np.asarray(draw("ct", "ROCO_00020")))  # varies by id
    assert draw("xray", "a", size=(100, 60)).size == (100, 60)
    with pytest.raises(ValueError, match="'pet'"):
        draw("pet", "a")
    start = time.perf_counter()
    for i, modality in enumerate(MODALITIES * 5):
        draw_array(modality, str(i))
    assert (time.perf_counter() - start) / (5 * len(MODALITIES)) < 0.02
