"""ImageCLEFmedical Caption 2026: the official evaluator's rules, metric by metric.

The evaluator (`caption_prediction/evaluator.py` of GitHub taubsity/clef-caption-evaluation-2026)
scores one submission against the ground truth with these rules, followed here exactly:

- normalisation (`imageclef_normalise`): lowercase, every digit run -> "number", ASCII
  punctuation removed. BERTScore, ROUGE-1 and BLEURT see normalised text; AlignScore, MedCAT and
  the image-caption similarity see the raw captions;
- a pair whose raw prediction and raw reference are both empty scores 1 (BERTScore, ROUGE-1,
  AlignScore, MedCAT); any other pair is scored by the library, an empty side included;
- BERTScore: microsoft/deberta-xlarge-mnli (bert-score's default layer 40), idf weights from all
  normalised references, each pair scored on its own (a separate bert-score call);
- ROUGE-1 F-measure, no stemmer, per pair;
- BLEURT-20-D12 (lucadiliello's PyTorch port), one padded batch of all pairs, mean of the logits;
- image-caption similarity: 2.5 * max(cos, 0) between the image's and the raw caption's
  embeddings (MedImageInsight); an empty caption scores 0;
- AlignScore (nli_sp) with the raw reference as context and the raw prediction as claim;
- relevance = mean(BERTScore, ROUGE-1, similarity); factuality = mean(MedCAT, AlignScore).

The metrics take raw (task-cleaned) text and normalise where the evaluator does. A composite
whose every part was computed with the official backbones is marked `status: official`;
otherwise `partial`, naming the substitutes and the missing parts (MedCAT needs a licensed UMLS
model pack: factuality substitutes rocobench's offline `concept_f1`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from harness.metrics.base import (
    SHARE,
    Detail,
    MetricOptions,
    MetricScore,
    MetricUnavailable,
    References,
    metric,
)
from harness.metrics.bertscore import BUNDLED_PREFIX, BERTScoreOptions, resolve_backbone
from harness.metrics.clinical import ConceptF1Options
from harness.text import imageclef_normalise

if TYPE_CHECKING:
    from PIL import Image

OFFICIAL_BERTSCORE = "microsoft/deberta-xlarge-mnli"
OFFICIAL_BLEURT = "lucadiliello/BLEURT-20-D12"
OFFICIAL_IMAGE_BACKBONE = "medimageinsight"
OFFICIAL_ALIGNSCORE = "yzha/AlignScore:AlignScore-base.ckpt"
ALIGNSCORE_BASE = "roberta-large"
SIMILARITY_WEIGHT = 2.5
RULES = "imageclef-caption-2026"  # recorded with every score computed by these rules


def both_empty(prediction: str, reference: str) -> bool:
    """The evaluator's empty-pair test: on the raw texts, before normalisation."""
    return len(prediction) == 0 and len(reference) == 0


# --- images of the evaluated pairs -------------------------------------------------------------


def pair_images(refs: References) -> list[Any]:
    """The images of the pairs (PIL images or loaders; `load_image` reads one)."""
    if refs.images is None:
        raise MetricUnavailable(
            "image-caption similarity needs the images of the pairs (a run has them; "
            "`rocobench score` pairs do not)"
        )
    return list(refs.images)


def load_image(image: Any) -> Image.Image:
    return image() if callable(image) else image


# --- BERTScore and ROUGE-1 -----------------------------------------------------------------------


class ImageCLEFBERTScoreOptions(MetricOptions):
    model_type: str = Field(
        default=OFFICIAL_BERTSCORE,
        min_length=1,
        description=f"Hub id, local path or '{BUNDLED_PREFIX}all-MiniLM-L6-v2'",
    )
    num_layers: int | None = Field(default=None, ge=0)


def bertscore_per_pair(
    predictions: Sequence[str], references: Sequence[str], options: ImageCLEFBERTScoreOptions
) -> tuple[list[float], dict[str, Detail]]:
    import torch
    from bert_score.utils import get_hash

    from harness.metrics.bertscore import _scorer

    inner = BERTScoreOptions(model_type=options.model_type, num_layers=options.num_layers, idf=True)
    model, num_layers = resolve_backbone(inner)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    scorer = _scorer(model, num_layers, inner, device)
    scorer._idf_dict = idf_dict([imageclef_normalise(r) for r in references], scorer._tokenizer)
    per_sample: list[float] = []
    for p, r in zip(predictions, references, strict=True):
        if both_empty(p, r):
            per_sample.append(1.0)
            continue
        cand, ref = imageclef_normalise(p), imageclef_normalise(r)
        if not cand.strip() or not ref.strip():
            # bert-score sets an empty side's F1 to 0 (and crashes on it under transformers 5)
            per_sample.append(0.0)
            continue
        per_sample.append(float(scorer.score([cand], [ref])[2].item()))
    details: dict[str, Detail] = {
        "rules": RULES,
        "backbone": options.model_type,
        "num_layers": num_layers,
        "idf": True,
        "device": device,
        "hash": get_hash(options.model_type, num_layers, True, False, False, False),
    }
    return per_sample, details


def idf_dict(sentences: Sequence[str], tokenizer: Any) -> dict[int, float]:
    """bert_score.utils.get_idf_dict(sentences, tokenizer): idf(t) = log((M + 1) / (df(t) + 1))
    over the M sentences, log(M + 1) for an unseen token. Written out because bert-score encodes
    an empty sentence with build_inputs_with_special_tokens, which transformers 5 tokenizers lack;
    here it is the tokenizer's encoding of "" (its special tokens), as bert-score meant."""
    from collections import Counter, defaultdict
    from math import log

    from bert_score.utils import process

    empty = set(tokenizer.encode("", add_special_tokens=True))
    counts: Counter[int] = Counter()
    for sentence in sentences:
        counts.update(process(sentence, tokenizer) if sentence.strip() else empty)
    n = len(sentences)
    weights: defaultdict[int, float] = defaultdict(lambda: log(n + 1))
    weights.update({token: log((n + 1) / (c + 1)) for token, c in counts.items()})
    return weights


@metric(
    "imageclef_bertscore",
    label="ImageCLEF BERTScore",
    order=210,
    options=ImageCLEFBERTScoreOptions,
    description=(
        "ImageCLEFmedical Caption 2026's BERTScore: mean over pairs of the F1 of "
        "bert_score.BERTScorer(model_type, idf=True, idf_sents=normalised references).score("
        "[normalised prediction], [normalised reference]), one call per pair; 1 where both raw "
        "texts are empty, 0 where one normalised side is empty. Default backbone "
        "microsoft/deberta-xlarge-mnli (layer 40); another backbone is another metric."
    ),
)
def _imageclef_bertscore(
    predictions: Sequence[str], refs: References, options: MetricOptions
) -> MetricScore:
    assert isinstance(options, ImageCLEFBERTScoreOptions)
    per_sample, details = bertscore_per_pair(predictions, refs.texts, options)
    return MetricScore(statistics.fmean(per_sample), per_sample, details)


def rouge1_per_pair(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    return [
        1.0
        if both_empty(p, r)
        else float(scorer.score(imageclef_normalise(r), imageclef_normalise(p))["rouge1"].fmeasure)
        for p, r in zip(predictions, references, strict=True)
    ]


@metric(
    "imageclef_rouge_1",
    label="ImageCLEF ROUGE-1",
    order=220,
    bounds=SHARE,
    description=(
        "ImageCLEFmedical Caption 2026's ROUGE-1: mean over pairs of the F-measure of "
        "rouge_score.RougeScorer(['rouge1'], use_stemmer=False).score(normalised reference, "
        "normalised prediction) (what evaluate's 'rouge' calls); 1 where both raw texts are empty."
    ),
)
def _imageclef_rouge_1(
    predictions: Sequence[str], refs: References, _: MetricOptions
) -> MetricScore:
    per_sample = rouge1_per_pair(predictions, refs.texts)
    details: dict[str, Detail] = {"rules": RULES, "use_stemmer": False}
    return MetricScore(statistics.fmean(per_sample), per_sample, details)


# --- image-caption similarity --------------------------------------------------------------------


class SimilarityOptions(MetricOptions):
    backbone: str = Field(
        default=OFFICIAL_IMAGE_BACKBONE,
        min_length=1,
        description=(
            "'medimageinsight' (the official model's published code in the folder named by "
            "ROCOBENCH_MEDIMAGEINSIGHT, or 'medimageinsight:<folder>'), or 'clip:<Hub id or "
            "path>' for a CLIP-style transformers model (e.g. a biomedical CLIP)"
        ),
    )
    batch_size: int = Field(default=32, gt=0)


# Loaded image-text encoders by backbone string: scoring several runs loads once.
_ENCODERS: dict[str, ImageTextEncoder] = {}


class ImageTextEncoder:
    """Embeds images and captions into one space; `cos` of the two is the similarity."""

    def encode_images(self, images: Sequence[Image.Image]) -> Any:
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str]) -> Any:
        raise NotImplementedError


class ClipEncoder(ImageTextEncoder):
    """A transformers model with get_image_features / get_text_features (CLIP and its kin)."""

    def __init__(self, name: str) -> None:
        import torch
        from transformers import AutoModel, AutoProcessor

        try:
            self.processor = AutoProcessor.from_pretrained(name)
            self.model = AutoModel.from_pretrained(name).eval()
        except OSError as err:
            raise MetricUnavailable(f"image-text backbone {name} cannot be loaded: {err}") from err
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)

    @staticmethod
    def _features(out: Any) -> Any:
        # transformers 5 returns a model output whose pooler_output is the projected embedding
        return out if hasattr(out, "shape") else out.pooler_output

    def encode_images(self, images: Sequence[Image.Image]) -> Any:
        import torch

        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        with torch.no_grad():
            return self._features(self.model.get_image_features(**inputs)).float().cpu().numpy()

    def encode_texts(self, texts: Sequence[str]) -> Any:
        import torch

        inputs = self.processor(
            text=list(texts), padding=True, truncation=True, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            return self._features(self.model.get_text_features(**inputs)).float().cpu().numpy()


class MedImageInsightEncoder(ImageTextEncoder):
    """The official backbone through its own published code (not a pip package): the folder
    holds `medimageinsightmodel.py` and the weights `<version>/vision_model/...`, as the
    evaluator's Docker image lays them out (Hub lion-ai/MedImageInsights)."""

    VERSION, VISION, LANGUAGE = "2024.09.27", "medimageinsigt-v1.0.0.pt", "language_model.pth"

    def __init__(self, folder: str) -> None:
        import importlib.util
        from pathlib import Path

        code = Path(folder) / "medimageinsightmodel.py"
        if not code.is_file():
            raise MetricUnavailable(
                f"MedImageInsight: no medimageinsightmodel.py in {folder} (clone the Hub repo "
                "lion-ai/MedImageInsights there, or pick backbone clip:<model>)"
            )
        import sys

        sys.path.insert(0, str(code.parent))  # the model code imports its own sibling modules
        spec = importlib.util.spec_from_file_location("medimageinsightmodel", code)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.model = module.MedImageInsight(
            model_dir=str(Path(folder) / self.VERSION),
            vision_model_name=self.VISION,
            language_model_name=self.LANGUAGE,
        )
        self.model.load_model()

    @staticmethod
    def _b64(image: Image.Image) -> str:
        import base64
        import io

        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    @staticmethod
    def _array(value: Any) -> Any:
        import numpy as np

        return value.cpu().numpy() if hasattr(value, "cpu") else np.asarray(value)

    def encode_images(self, images: Sequence[Image.Image]) -> Any:
        out = self.model.encode(images=[self._b64(i) for i in images])
        return self._array(out["image_embeddings"])

    def encode_texts(self, texts: Sequence[str]) -> Any:
        out = self.model.encode(texts=list(texts))
        return self._array(out["text_embeddings"])


def image_text_encoder(backbone: str) -> ImageTextEncoder:
    import os

    if backbone not in _ENCODERS:
        kind, _, where = backbone.partition(":")
        if kind == "clip" and where:
            _ENCODERS[backbone] = ClipEncoder(where)
        elif kind == "medimageinsight":
            folder = where or os.environ.get("ROCOBENCH_MEDIMAGEINSIGHT", "")
            if not folder:
                raise MetricUnavailable(
                    "MedImageInsight needs its published code and weights: set "
                    "ROCOBENCH_MEDIMAGEINSIGHT to their folder"
                )
            _ENCODERS[backbone] = MedImageInsightEncoder(folder)
        else:
            raise ValueError(
                f"image-text backbone {backbone!r}: expected 'medimageinsight[:<folder>]' or "
                "'clip:<Hub id or path>'"
            )
    return _ENCODERS[backbone]


def similarity_per_pair(
    predictions: Sequence[str], images: Sequence[Any], options: SimilarityOptions
) -> list[float]:
    import numpy as np

    encoder = image_text_encoder(options.backbone)
    step = options.batch_size
    image_emb = np.concatenate(
        [
            encoder.encode_images([load_image(im) for im in images[i : i + step]])
            for i in range(0, len(images), step)
        ]
    )
    texts = list(predictions)  # raw captions, as the evaluator encodes them
    text_emb = np.concatenate(
        [encoder.encode_texts(texts[i : i + step]) for i in range(0, len(texts), step)]
    )
    scores = []
    for caption, c, v in zip(texts, text_emb, image_emb, strict=True):
        if len(caption) == 0:
            scores.append(0.0)
            continue
        cos = float(np.dot(c, v) / (np.linalg.norm(c) * np.linalg.norm(v)))
        scores.append(SIMILARITY_WEIGHT * max(cos, 0.0))
    return scores


@metric(
    "imageclef_similarity",
    label="ImageCLEF image similarity",
    order=230,
    options=SimilarityOptions,
    description=(
        "ImageCLEFmedical Caption 2026's image-caption similarity: mean over pairs of "
        "2.5 * max(cos(image embedding, raw prediction embedding), 0), 0 for an empty "
        "prediction. Official backbone MedImageInsight; a CLIP-style backbone "
        "(clip:<model>) is another metric. Needs the pairs' images (a run hands them on)."
    ),
)
def _imageclef_similarity(
    predictions: Sequence[str], refs: References, options: MetricOptions
) -> MetricScore:
    assert isinstance(options, SimilarityOptions)
    per_sample = similarity_per_pair(predictions, pair_images(refs), options)
    details: dict[str, Detail] = {
        "rules": RULES,
        "backbone": options.backbone,
        "weight": SIMILARITY_WEIGHT,
    }
    return MetricScore(statistics.fmean(per_sample), per_sample, details)


# --- BLEURT ------------------------------------------------------------------------------------


class BleurtOptions(MetricOptions):
    model: str = Field(
        default=OFFICIAL_BLEURT,
        min_length=1,
        description="Hub id or folder of a BLEURT PyTorch checkpoint (lucadiliello's port)",
    )
    # None: one padded batch of all pairs, as the evaluator runs it (padding moves float32
    # results in the last digits, so a smaller batch is not bit-identical)
    batch_size: int | None = Field(default=None, gt=0)


_BLEURTS: dict[str, tuple[Any, Any]] = {}


def load_bleurt(name: str) -> tuple[Any, Any]:
    """(tokenizer, model) of a BLEURT checkpoint of lucadiliello's PyTorch port (BLEURT-20-D12).

    The port's own package (bleurt-pytorch 0.0.1) no longer imports under transformers 5. Its
    architecture is BERT with an embedding projection and a pooled regression head, which is
    transformers' RemBERT: the checkpoint loads into RemBertForSequenceClassification under
    renamed keys (every key must match), and its SentencePiece tokenizer is DeBERTa-v2's, as
    the port defines it (BleurtSPTokenizer subclasses DebertaV2Tokenizer)."""
    if name in _BLEURTS:
        return _BLEURTS[name]
    import json
    from pathlib import Path

    import torch
    from transformers import DebertaV2Tokenizer, RemBertConfig, RemBertForSequenceClassification

    folder = Path(name)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        try:
            folder = Path(
                snapshot_download(
                    name, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.model"]
                )
            )
        except Exception as err:  # offline, unknown repo: one line for the record
            raise MetricUnavailable(f"BLEURT checkpoint {name} cannot be fetched: {err}") from err
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    hidden = raw.get("hidden_size", 768)
    embedding = raw.get("embedding_size") or hidden
    config = RemBertConfig(
        vocab_size=raw["vocab_size"],
        input_embedding_size=embedding,
        output_embedding_size=embedding,
        hidden_size=hidden,
        num_hidden_layers=raw.get("num_hidden_layers", 12),
        num_attention_heads=raw.get("num_attention_heads", 12),
        intermediate_size=raw.get("intermediate_size", 3072),
        hidden_act=raw.get("hidden_act", "gelu"),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0,
        max_position_embeddings=raw.get("max_position_embeddings", 512),
        type_vocab_size=raw.get("type_vocab_size", 2),
        layer_norm_eps=raw.get("layer_norm_eps", 1e-12),
        pad_token_id=raw.get("pad_token_id", 0),
        bos_token_id=None,  # RemBERT's defaults; BLEURT has no use for them
        eos_token_id=None,
        num_labels=1,
    )
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(folder / "model.safetensors")
    else:
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    renamed = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue  # a buffer, rebuilt by the model
        key = key.replace("bleurt.", "rembert.", 1)
        renamed[
            key.replace("encoder.embedding_projection", "encoder.embedding_hidden_mapping_in")
        ] = value
    model = RemBertForSequenceClassification(config)
    if raw.get("embedding_size") is None:  # no projection in the checkpoint: the identity
        mapping = model.rembert.encoder.embedding_hidden_mapping_in
        renamed.setdefault("rembert.encoder.embedding_hidden_mapping_in.weight", torch.eye(hidden))
        renamed.setdefault(
            "rembert.encoder.embedding_hidden_mapping_in.bias", torch.zeros_like(mapping.bias)
        )
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        raise MetricUnavailable(
            f"BLEURT checkpoint {name}: keys that do not fit: missing {sorted(missing)[:4]}, "
            f"unexpected {sorted(unexpected)[:4]}"
        )
    tokenizer = DebertaV2Tokenizer(vocab_file=str(folder / "spm.model"), do_lower_case=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    _BLEURTS[name] = (tokenizer, model.eval().to(device))
    return _BLEURTS[name]


def bleurt_per_pair(
    predictions: Sequence[str], references: Sequence[str], options: BleurtOptions
) -> list[float]:
    import torch

    tokenizer, model = load_bleurt(options.model)
    refs = [imageclef_normalise(r) for r in references]
    cands = [imageclef_normalise(p) for p in predictions]
    step = options.batch_size or len(refs)
    scores: list[float] = []
    with torch.no_grad():
        for i in range(0, len(refs), step):
            inputs = tokenizer(
                refs[i : i + step],
                cands[i : i + step],
                padding="longest",
                return_tensors="pt",
                truncation=True,
                max_length=512,
            ).to(model.device)
            scores += model(**inputs).logits.flatten().tolist()
    return scores


@metric(
    "imageclef_bleurt",
    label="ImageCLEF BLEURT",
    order=260,
    options=BleurtOptions,
    description=(
        "ImageCLEFmedical Caption 2026's BLEURT: mean of the logits of BLEURT-20-D12 "
        "(lucadiliello's PyTorch port, loaded into transformers' RemBERT) on (normalised "
        "reference, normalised prediction), all pairs in one batch padded to the longest, "
        "truncated to 512 tokens; no empty-pair rule."
    ),
)
def _imageclef_bleurt(
    predictions: Sequence[str], refs: References, options: MetricOptions
) -> MetricScore:
    assert isinstance(options, BleurtOptions)
    per_sample = bleurt_per_pair(predictions, refs.texts, options)
    details: dict[str, Detail] = {"rules": RULES, "model": options.model}
    return MetricScore(statistics.fmean(per_sample), per_sample, details)


# --- composites ----------------------------------------------------------------------------------


class RelevanceOptions(MetricOptions):
    bertscore_model: str = Field(default=OFFICIAL_BERTSCORE, min_length=1)
    bertscore_layers: int | None = Field(default=None, ge=0)
    image_backbone: str = Field(default=OFFICIAL_IMAGE_BACKBONE, min_length=1)
    # True: fail when a part cannot be computed, instead of reporting a partial score
    require_official: bool = False


class FactualityOptions(MetricOptions):
    alignscore_checkpoint: str = Field(default=OFFICIAL_ALIGNSCORE, min_length=1)
    alignscore_base_model: str = Field(default=ALIGNSCORE_BASE, min_length=1)
    # MedCAT needs a licensed UMLS model pack: rocobench's concept_f1 stands in for it
    substitute_vocabulary: Literal["map", "manual"] = "map"
    require_official: bool = False


class _Part:
    """One part of a composite: its value and the statistic that resamples it, or why not."""

    def __init__(
        self,
        name: str,
        value: float | None = None,
        statistic: Any = None,
        substitute: str | None = None,
        missing: str | None = None,
    ) -> None:
        self.name, self.value, self.statistic = name, value, statistic
        self.substitute, self.missing = substitute, missing


# Per-pair scores of composite parts by (part, setting, pairs, images): the value and the
# bootstrap interval of a composite (and a part requested on its own) compute them once.
_PART_CACHE: dict[tuple[Any, ...], list[float]] = {}


def _mean_part(
    name: str,
    compute: Callable[[], list[float]],
    substitute: str | None,
    key: tuple[Any, ...],
) -> _Part:
    from harness.metrics.stats import mean_statistic

    key = (name, *key)
    try:
        if key not in _PART_CACHE:
            if len(_PART_CACHE) >= 8:
                _PART_CACHE.pop(next(iter(_PART_CACHE)))
            _PART_CACHE[key] = compute()
        per_sample = _PART_CACHE[key]
    except MetricUnavailable as err:
        return _Part(name, missing=f"{name}: {err}")
    return _Part(name, statistics.fmean(per_sample), mean_statistic(per_sample), substitute)


def _composite(name: str, parts: list[_Part], require_official: bool) -> MetricScore:
    import json

    computed = [p for p in parts if p.value is not None]
    missing = [p.missing for p in parts if p.missing is not None]
    substitutes = [f"{p.name}: {p.substitute}" for p in computed if p.substitute is not None]
    official = not missing and not substitutes
    if require_official and not official:
        raise MetricUnavailable(f"{name} is not official here: " + "; ".join(missing + substitutes))
    if not computed:
        raise MetricUnavailable(f"{name}: no part could be computed ({'; '.join(missing)})")
    details: dict[str, Detail] = {
        "rules": RULES,
        "status": "official" if official else "partial",
        "parts": json.dumps({p.name: p.value for p in computed}),
    }
    if substitutes:
        details["substitutes"] = "; ".join(substitutes)
    if missing:  # the names are the setting; why (machine-specific text) is a result
        details["missing"] = ", ".join(p.name for p in parts if p.missing is not None)
        details["missing_why"] = "; ".join(missing)
    # a mean of means: the composite has no per-pair score where a part skips pairs
    return MetricScore(statistics.fmean(p.value for p in computed), None, details)


def _relevance_parts(
    predictions: Sequence[str], refs: References, options: RelevanceOptions
) -> list[_Part]:
    references = refs.texts
    bert = ImageCLEFBERTScoreOptions(
        model_type=options.bertscore_model, num_layers=options.bertscore_layers
    )
    bert_note = (
        None
        if options.bertscore_model == OFFICIAL_BERTSCORE and options.bertscore_layers is None
        else f"backbone {options.bertscore_model} instead of {OFFICIAL_BERTSCORE}"
    )
    image_note = (
        None
        if options.image_backbone.partition(":")[0] == OFFICIAL_IMAGE_BACKBONE
        else f"backbone {options.image_backbone} instead of MedImageInsight"
    )
    similarity = SimilarityOptions(backbone=options.image_backbone)
    pairs = (tuple(predictions), tuple(references), id(refs.images))
    return [
        _mean_part(
            "bertscore",
            lambda: bertscore_per_pair(predictions, references, bert)[0],
            bert_note,
            (bert, *pairs),
        ),
        _mean_part("rouge_1", lambda: rouge1_per_pair(predictions, references), None, pairs),
        _mean_part(
            "similarity",
            lambda: similarity_per_pair(predictions, pair_images(refs), similarity),
            image_note,
            (similarity, *pairs),
        ),
    ]


def _combined(parts: list[_Part]) -> Any:
    def statistic(counts: Any) -> Any:
        values = [p.statistic(counts) for p in parts if p.value is not None]
        return sum(values) / len(values)

    return statistic


@metric(
    "imageclef_relevance",
    label="ImageCLEF relevance",
    order=200,
    options=RelevanceOptions,
    description=(
        "ImageCLEFmedical Caption 2026's primary score: mean of imageclef_bertscore, "
        "imageclef_rouge_1 and imageclef_similarity. Detail status 'official' when every part "
        "was computed with the official backbones, else 'partial' with the substitutes and "
        "missing parts named (a partial score is the mean of the parts computed)."
    ),
    resampler=lambda p, r, o: _combined(_relevance_parts(p, r, o)),  # type: ignore[arg-type]
)
def _imageclef_relevance(
    predictions: Sequence[str], refs: References, options: MetricOptions
) -> MetricScore:
    assert isinstance(options, RelevanceOptions)
    parts = _relevance_parts(predictions, refs, options)
    return _composite("relevance", parts, options.require_official)


def _factuality_parts(
    predictions: Sequence[str], refs: References, options: FactualityOptions
) -> list[_Part]:
    references = refs.texts
    from harness.metrics.base import METRICS

    concept = METRICS.get("concept_f1")
    concept_options = ConceptF1Options(vocabulary=options.substitute_vocabulary)
    medcat = _Part(
        "medcat",
        concept.score(predictions, refs, concept_options).value,
        concept.statistic(predictions, refs, concept_options),
        substitute=(
            f"rocobench concept_f1 (vocabulary {options.substitute_vocabulary}) instead of the "
            "MedCAT UMLS score (needs a licensed UMLS model pack)"
        ),
    )
    align_options = AlignScoreOptions(
        checkpoint=options.alignscore_checkpoint, base_model=options.alignscore_base_model
    )
    official = (
        options.alignscore_checkpoint == OFFICIAL_ALIGNSCORE
        and options.alignscore_base_model == ALIGNSCORE_BASE
    )
    align = _mean_part(
        "alignscore",
        lambda: alignscore_per_pair(predictions, references, align_options),
        None if official else f"{options.alignscore_checkpoint} on {options.alignscore_base_model}",
        (align_options, tuple(predictions), tuple(references)),
    )
    return [medcat, align]


@metric(
    "imageclef_factuality",
    label="ImageCLEF factuality",
    order=240,
    options=FactualityOptions,
    description=(
        "ImageCLEFmedical Caption 2026's secondary score: mean of the MedCAT UMLS concept score "
        "and AlignScore on the raw texts. MedCAT needs a licensed UMLS model pack, so rocobench "
        "substitutes its offline concept_f1: the detail status is then 'partial' and names it."
    ),
    resampler=lambda p, r, o: _combined(_factuality_parts(p, r, o)),  # type: ignore[arg-type]
)
def _imageclef_factuality(
    predictions: Sequence[str], refs: References, options: MetricOptions
) -> MetricScore:
    assert isinstance(options, FactualityOptions)
    parts = _factuality_parts(predictions, refs, options)
    return _composite("factuality", parts, options.require_official)


# --- AlignScore ---------------------------------------------------------------------------------


class AlignScoreOptions(MetricOptions):
    checkpoint: str = Field(
        default=OFFICIAL_ALIGNSCORE,
        min_length=1,
        description="AlignScore checkpoint: a local .ckpt file or '<Hub repo>:<file>'",
    )
    base_model: str = Field(
        default=ALIGNSCORE_BASE, min_length=1, description="Hub id or folder of its encoder"
    )
    batch_size: int = Field(default=32, gt=0)


_ALIGNERS: dict[tuple[str, str], tuple[Any, Any, Any]] = {}


def load_alignscore(checkpoint: str, base_model: str) -> tuple[Any, Any, Any]:
    """(tokenizer, encoder, 3-way head) of an AlignScore checkpoint.

    The AlignScore package (alignscore-speedofmagic 0.1.4) pins numpy<2, transformers<5 and
    protobuf<=3.20.3 and cannot be installed beside rocobench. Its model is the encoder's pooled
    output under three linear heads; nli_sp uses the 3-way one. The Lightning checkpoint's
    `base_model.*` and `tri_layer.*` weights load into transformers' AutoModel and a Linear,
    every encoder key required."""
    key = (checkpoint, base_model)
    if key in _ALIGNERS:
        return _ALIGNERS[key]
    from pathlib import Path

    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = Path(checkpoint)
    if not path.is_file():
        repo, _, filename = checkpoint.partition(":")
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(repo, filename))
        except Exception as err:  # offline, unknown repo: one line for the record
            raise MetricUnavailable(f"AlignScore checkpoint {checkpoint}: {err}") from err
    try:
        # a Lightning checkpoint; only tensors and plain containers are unpickled
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(base_model))
    except Exception as err:
        raise MetricUnavailable(f"AlignScore {checkpoint} on {base_model}: {err}") from err
    weights = {
        k.removeprefix("base_model."): v
        for k, v in state.items()
        if k.startswith("base_model.") and not k.endswith("position_ids")
    }
    try:
        missing, _ = encoder.load_state_dict(weights, strict=False)
        head = torch.nn.Linear(encoder.config.hidden_size, 3)
        head.load_state_dict({n: state[f"tri_layer.{n}"] for n in ("weight", "bias")})
    except (RuntimeError, KeyError) as err:  # shapes of another encoder size, no 3-way head
        raise MetricUnavailable(
            f"AlignScore {checkpoint} does not fit {base_model}: {err}"
        ) from err
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        raise MetricUnavailable(
            f"AlignScore {checkpoint} does not fit {base_model}: missing {sorted(missing)[:4]}"
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    _ALIGNERS[key] = (tokenizer, encoder.eval().to(device), head.eval().to(device))
    return _ALIGNERS[key]


def sentences(text: str) -> list[str]:
    """NLTK's sent_tokenize, as AlignScore splits; its Punkt model must be installed."""
    import nltk

    try:
        return nltk.sent_tokenize(text)
    except LookupError as err:
        raise MetricUnavailable(
            "AlignScore splits sentences with NLTK's Punkt model: python -m nltk.downloader "
            "punkt_tab"
        ) from err


def alignscore_pair(
    context: str, claim: str, model: tuple[Any, Any, Any], batch_size: int
) -> float:
    """AlignScore's nli_sp: the context in chunks of whole sentences (about 350 words), the
    claim in sentences; each claim sentence scores its best chunk's 'aligned' probability, the
    pair the mean over claim sentences."""
    import torch

    tokenizer, encoder, head = model
    context_sents = sentences(context) or [""]
    per_chunk = max(len(context_sents) // (len(context.strip().split()) // 350 + 1), 1)
    chunks = [
        " ".join(context_sents[i : i + per_chunk]) for i in range(0, len(context_sents), per_chunk)
    ]
    claims = sentences(claim)
    if not claims:
        return 0.0  # the evaluator's AlignScore call fails on a claim without a sentence
    premises = [c for c in chunks for _ in claims]
    hypotheses = [h for _ in chunks for h in claims]
    probs = []
    for i in range(0, len(premises), batch_size):
        pre, hyp = premises[i : i + batch_size], hypotheses[i : i + batch_size]
        common = {"padding": "max_length", "max_length": tokenizer.model_max_length}
        try:
            inputs = tokenizer(pre, hyp, truncation="only_first", return_tensors="pt", **common)
        except Exception:  # the claim alone is too long: AlignScore then truncates both
            inputs = tokenizer(pre, hyp, truncation=True, return_tensors="pt", **common)
        inputs = {k: v.to(encoder.device) for k, v in inputs.items()}
        with torch.no_grad():
            pooled = encoder(**inputs).pooler_output
            probs.append(torch.softmax(head(pooled), dim=-1)[:, 0].cpu())
    table = torch.cat(probs).view(len(chunks), len(claims))
    return float(table.max(dim=0).values.mean().item())


def alignscore_per_pair(
    predictions: Sequence[str], references: Sequence[str], options: AlignScoreOptions
) -> list[float]:
    model = load_alignscore(options.checkpoint, options.base_model)
    return [
        1.0 if both_empty(p, r) else alignscore_pair(r, p, model, options.batch_size)
        for p, r in zip(predictions, references, strict=True)
    ]


@metric(
    "imageclef_alignscore",
    label="ImageCLEF AlignScore",
    order=250,
    options=AlignScoreOptions,
    description=(
        "ImageCLEFmedical Caption 2026's AlignScore: mean over pairs of AlignScore (nli_sp) "
        "with the raw reference as context and the raw prediction as claim (encoder "
        "roberta-large, checkpoint AlignScore-base, as the evaluator names them); 1 where both "
        "raw texts are empty, 0 for a prediction without a sentence."
    ),
)
def _imageclef_alignscore(
    predictions: Sequence[str], refs: References, options: MetricOptions
) -> MetricScore:
    assert isinstance(options, AlignScoreOptions)
    per_sample = alignscore_per_pair(predictions, refs.texts, options)
    details: dict[str, Detail] = {
        "rules": RULES,
        "checkpoint": options.checkpoint,
        "base_model": options.base_model,
    }
    return MetricScore(statistics.fmean(per_sample), per_sample, details)
