"""The ImageCLEFmedical Caption 2026 rules (harness.metrics.imageclef) against the reference
libraries called directly, the way the official evaluator calls them.

BERTScore runs on the bundled MiniLM (the rules are the evaluator's; only the backbone differs),
the image-text model is a tiny random-weight CLIP built here. Edge cases are data:
tests/metric_cases/imageclef/*.json.
"""

from __future__ import annotations

import json
import re
import statistics
import string
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.metrics import (
    METRICS,
    MetricUnavailable,
    References,
    compute_metrics,
    parse_options,
)
from harness.metrics.bertscore import bundled_model_path
from harness.metrics.imageclef import _composite, _Part, idf_dict
from harness.text import imageclef_normalise

CASES = Path(__file__).parents[1] / "metric_cases" / "imageclef"
MINILM = "bundled:all-MiniLM-L6-v2"
TOL = 1e-6  # float32 models

# Real ROCOv2-style captions with what the normalisation changes: case, digits, punctuation.
PAIRS = [
    (
        "CT of the chest, axial view, showing a 5 cm ascending aortic aneurysm.",
        "CT chest axial view showing a huge ascending aortic aneurysm (*).",
    ),
    ("Computed tomography shows a thrombus (arrow).", "Computed tomography (CT) shows thrombosis"),
    ("Chest X-ray showing a protruding mass.", "Chest radiography shows a protruding mass."),
    ("Axial T2-weighted MRI, 12 mm lesion at L4-L5.", "MRI T2 axial: 14 mm lesion at L4/L5 level."),
    ("Abdominal radiograph showing a stent.", "Abdominal X-ray. SEMS was placed."),
]
# The evaluator's edge cases: both raw sides empty (1), one side empty or empty once normalised (0).
EDGE_PAIRS = [("", ""), ("...", "Ultrasound of the liver."), ("Ultrasound of the liver.", "(*)")]


def official_normalise(caption: str) -> str:
    """The evaluator's preprocess_caption, written out."""
    caption = caption.lower()
    caption = re.compile(r"\d+").sub("number", caption)
    return caption.translate(str.maketrans("", "", string.punctuation))


def official_rouge1(pairs: list[tuple[str, str]]) -> float:
    """evaluate's 'rouge' (what the evaluator loads) is rouge_score's RougeScorer per pair."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    scores = [
        1.0
        if len(p) == 0 and len(r) == 0
        else scorer.score(official_normalise(r), official_normalise(p))["rouge1"].fmeasure
        for p, r in pairs
    ]
    return float(statistics.fmean(scores))


def official_bertscore(pairs: list[tuple[str, str]]) -> float:
    """The evaluator's BERTScore with the bundled backbone: BERTScorer(idf=True, idf_sents=all
    normalised references), one score() call per pair, 1 for a pair of raw empty texts. Under
    transformers 5 bert-score fails on an empty sentence where it would give 0, so those
    pairs are 0 here and the idf sentences must be non-empty (the edge cases check the rest)."""
    from bert_score import BERTScorer

    idf_sents = [official_normalise(r) for _, r in pairs]
    assert all(s.strip() for s in idf_sents)
    scorer = BERTScorer(
        model_type=bundled_model_path("all-MiniLM-L6-v2"),
        num_layers=6,
        idf=True,
        idf_sents=idf_sents,
        nthreads=0,
    )
    scores = []
    for p, r in pairs:
        cand, ref = official_normalise(p), official_normalise(r)
        if len(p) == 0 and len(r) == 0:
            scores.append(1.0)
        elif not cand.strip():
            scores.append(0.0)
        else:
            scores.append(scorer.score(cands=[cand], refs=[ref])[2].item())
    return float(statistics.fmean(scores))


def _write_pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    lines = [
        json.dumps({"id": i, "prediction": p, "reference": r}) for i, (p, r) in enumerate(pairs)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_score_imageclef_profile_equals_the_official_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rocobench score --profile imageclef --bertscore-model bundled:… --metrics
    bertscore_f1,rouge_1 --json` equals a direct implementation of the evaluator to 1e-6."""
    pairs = [*PAIRS, ("", "Sagittal CT of the spine.")]  # an empty prediction among them
    args = ["score", "--pairs", str(_write_pairs(tmp_path / "p.jsonl", pairs))]
    args += ["--profile", "imageclef", "--bertscore-model", MINILM]
    assert main([*args, "--metrics", "bertscore_f1,rouge_1", "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert list(ours) == ["bertscore_f1", "rouge_1"]
    assert ours["bertscore_f1"] == pytest.approx(official_bertscore(pairs), abs=TOL)
    assert ours["rouge_1"] == pytest.approx(official_rouge1(pairs), abs=TOL)
    # not the plain metrics on normalised text: idf weighting changes BERTScore
    plain = compute_metrics(
        [("bertscore_f1", parse_options("bertscore_f1", {"model_type": MINILM}))],
        [imageclef_normalise(p) for p, _ in pairs],
        [imageclef_normalise(r) for _, r in pairs],
        resamples=0,
    )["bertscore_f1"].value
    assert abs(plain - ours["bertscore_f1"]) > 1e-4


def test_idf_counts_empty_references_as_bert_score_does() -> None:
    """idf(t) = log((M + 1) / (df + 1)) over all M references, an empty one included (it holds
    only the special tokens, whose idf stays 0 because every sentence has them)."""
    from math import log

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bundled_model_path("all-MiniLM-L6-v2"))
    refs = ["axial ct of the chest", "", "ct of the abdomen", " "]
    weights = idf_dict(refs, tok)
    m = len(refs)
    ct, chest = tok.convert_tokens_to_ids(["ct", "chest"])
    assert weights[ct] == pytest.approx(log((m + 1) / 3))
    assert weights[chest] == pytest.approx(log((m + 1) / 2))
    assert weights[tok.cls_token_id] == weights[tok.sep_token_id] == 0.0
    assert weights[tok.convert_tokens_to_ids("liver")] == pytest.approx(log(m + 1))
    from bert_score.utils import get_idf_dict

    non_empty = [r for r in refs if r.strip()]  # bert-score itself, where it can run
    assert dict(idf_dict(non_empty, tok)) == dict(get_idf_dict(non_empty, tok, nthreads=0))


@pytest.mark.parametrize(
    "case",
    json.loads((CASES / "normalise.json").read_text(encoding="utf-8"))["cases"],
    ids=lambda c: c["name"],
)
def test_normalisation_cases(case: dict[str, str]) -> None:
    assert imageclef_normalise(case["text"]) == case["normalised"]
    assert official_normalise(case["text"]) == case["normalised"]


EMPTY_CASES = json.loads((CASES / "empty_pairs.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("metric", ["imageclef_rouge_1", "imageclef_bertscore"])
def test_empty_pair_cases(metric: str) -> None:
    options = parse_options(metric, {"model_type": MINILM} if "bert" in metric else {})
    preds = [c["prediction"] for c in EMPTY_CASES]
    refs = [c["reference"] for c in EMPTY_CASES]
    score = compute_metrics([(metric, options)], preds, refs, resamples=0)[metric]
    assert score.per_sample == pytest.approx([c[metric] for c in EMPTY_CASES], abs=TOL)
    assert score.value == pytest.approx(statistics.fmean(score.per_sample))
    assert score.details["rules"] == "imageclef-caption-2026"


def test_rouge_edge_pairs_match_the_library() -> None:
    pairs = [*PAIRS, *EDGE_PAIRS]
    score = compute_metrics(
        [("imageclef_rouge_1", parse_options("imageclef_rouge_1", {}))],
        [p for p, _ in pairs],
        [r for _, r in pairs],
        resamples=0,
    )["imageclef_rouge_1"]
    assert score.value == pytest.approx(official_rouge1(pairs), abs=1e-12)


def test_imageclef_bertscore_defaults_to_the_official_backbone() -> None:
    options = parse_options("imageclef_bertscore", {})
    assert options.model_type == "microsoft/deberta-xlarge-mnli"  # type: ignore[attr-defined]
    assert "imageclef_relevance" in METRICS and "imageclef_factuality" in METRICS


# --- composites ----------------------------------------------------------------------------------


def test_composite_is_official_only_when_every_part_is() -> None:
    official = _composite("relevance", [_Part("a", 0.2), _Part("b", 0.4)], False)
    assert official.value == pytest.approx(0.3)
    assert official.details["status"] == "official"
    assert "missing" not in official.details and "substitutes" not in official.details
    partial = _composite(
        "factuality",
        [_Part("medcat", 0.5, substitute="concept_f1"), _Part("x", missing="x: no")],
        False,
    )
    assert partial.value == 0.5
    assert partial.details["status"] == "partial"
    assert partial.details["substitutes"] == "medcat: concept_f1"
    assert partial.details["missing"] == "x" and partial.details["missing_why"] == "x: no"
    with pytest.raises(MetricUnavailable, match="not official"):
        _composite("factuality", [_Part("medcat", 0.5, substitute="concept_f1")], True)


def test_relevance_without_images_is_partial_and_names_what_is_missing() -> None:
    preds, refs = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    options = parse_options("imageclef_relevance", {"bertscore_model": MINILM})
    scores = compute_metrics(
        [
            ("imageclef_relevance", options),
            ("imageclef_rouge_1", parse_options("imageclef_rouge_1", {})),
        ],
        preds,
        refs,
        resamples=50,
    )
    rel = scores["imageclef_relevance"]
    assert rel.details["status"] == "partial"
    assert rel.details["missing"] == "similarity"
    assert "needs the images" in str(rel.details["missing_why"])
    assert "bundled:all-MiniLM-L6-v2 instead of" in str(rel.details["substitutes"])
    parts = json.loads(str(rel.details["parts"]))
    assert parts["rouge_1"] == scores["imageclef_rouge_1"].value
    assert rel.value == pytest.approx(statistics.fmean(parts.values()))
    assert rel.ci95 is not None and rel.ci95[0] <= rel.value <= rel.ci95[1]


def test_factuality_substitutes_concept_f1_for_medcat() -> None:
    preds, refs = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    options = parse_options("imageclef_factuality", {"substitute_vocabulary": "map"})
    scores = compute_metrics(
        [("imageclef_factuality", options), ("concept_f1", parse_options("concept_f1", {}))],
        preds,
        refs,
        resamples=0,
    )
    fact = scores["imageclef_factuality"]
    assert fact.details["status"] == "partial"
    assert "concept_f1" in str(fact.details["substitutes"])
    assert json.loads(str(fact.details["parts"]))["medcat"] == scores["concept_f1"].value


# --- image-caption similarity on a tiny random CLIP ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CLIP (transformers) with the bundled MiniLM's tokenizer, saved as a
    folder a `clip:<path>` backbone loads."""
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
    )

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_path("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": tokenizer.vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.sep_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("tiny_clip")
    CLIPModel(config).eval().save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    tokenizer.model_max_length = 64
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _images(n: int) -> list[Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(n)]


def test_similarity_is_clipped_weighted_cosine(tiny_clip: Path) -> None:
    import numpy as np
    import torch
    from transformers import CLIPModel, CLIPProcessor

    preds = ["Axial CT of the chest, 5 mm.", "", "MRI brain", "Chest X-ray", "US liver"]
    images = _images(len(preds))
    options = parse_options("imageclef_similarity", {"backbone": f"clip:{tiny_clip}"})
    loaders = tuple(lambda im=im: im for im in images)  # as a run hands them on
    refs = References(tuple(["ref"] * len(preds)), images=loaders)
    score = compute_metrics([("imageclef_similarity", options)], preds, refs, resamples=0)[
        "imageclef_similarity"
    ]

    model, processor = (
        CLIPModel.from_pretrained(tiny_clip),
        CLIPProcessor.from_pretrained(tiny_clip),
    )
    expected = []
    with torch.no_grad():
        for caption, image in zip(preds, images, strict=True):
            if not caption:
                expected.append(0.0)
                continue
            v = model.get_image_features(**processor(images=[image], return_tensors="pt"))
            c = model.get_text_features(**processor(text=[caption], return_tensors="pt"))
            v = (v if torch.is_tensor(v) else v.pooler_output)[0].numpy()
            c = (c if torch.is_tensor(c) else c.pooler_output)[0].numpy()
            cos = np.dot(c, v) / (np.linalg.norm(c) * np.linalg.norm(v))
            expected.append(2.5 * max(float(cos), 0.0))
    assert score.per_sample == pytest.approx(expected, abs=TOL)
    assert score.details["backbone"] == f"clip:{tiny_clip}"
    assert any(v > 0 for v in expected) and all(0 <= v <= 2.5 for v in expected)


def test_similarity_needs_images() -> None:
    options = parse_options("imageclef_similarity", {"backbone": "clip:unused"})
    with pytest.raises(MetricUnavailable, match="needs the images"):
        compute_metrics([("imageclef_similarity", options)], ["a"], ["b"], resamples=0)


def test_medimageinsight_without_its_code_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROCOBENCH_MEDIMAGEINSIGHT", raising=False)
    options = parse_options("imageclef_similarity", {})
    refs = References(("b",), images=tuple(_images(1)))
    with pytest.raises(MetricUnavailable, match="ROCOBENCH_MEDIMAGEINSIGHT"):
        compute_metrics([("imageclef_similarity", options)], ["a"], refs, resamples=0)
    options = parse_options("imageclef_similarity", {"backbone": f"medimageinsight:{tmp_path}"})
    with pytest.raises(MetricUnavailable, match="medimageinsightmodel"):
        compute_metrics([("imageclef_similarity", options)], ["a"], refs, resamples=0)


# --- BLEURT on a tiny random checkpoint of the PyTorch port -------------------------------------


def _bleurt_port() -> Any:
    """bleurt-pytorch 0.0.1, the evaluator's BLEURT library, made importable under
    transformers 5 for this check: it imports two names transformers removed and calls two
    PreTrainedModel methods transformers 5 dropped; none of them changes a forward pass."""
    import sys
    import types

    import torch
    import transformers
    import transformers.pytorch_utils as pytorch_utils

    pytest.importorskip("sentencepiece")
    if not hasattr(pytorch_utils, "find_pruneable_heads_and_indices"):
        pytorch_utils.find_pruneable_heads_and_indices = None  # pruning only
    fast = types.ModuleType("transformers.models.bert.tokenization_bert_fast")
    fast.BertTokenizerFast = transformers.BertTokenizer  # type: ignore[attr-defined]
    sys.modules.setdefault(fast.__name__, fast)
    port = pytest.importorskip("bleurt_pytorch")
    from bleurt_pytorch.bleurt.modeling_bleurt import BleurtModel

    def extended_mask(
        self: Any, mask: Any, shape: Any, device: Any = None, dtype: Any = None
    ) -> Any:
        dtype = dtype or self.dtype
        return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    if not hasattr(BleurtModel, "get_extended_attention_mask"):
        BleurtModel.get_extended_attention_mask = extended_mask
        BleurtModel.get_head_mask = lambda self, head_mask, n: [None] * n
    return port


@pytest.fixture(scope="module")
def tiny_bleurt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """A random-weight BLEURT checkpoint (the port's classes) with a SentencePiece vocabulary
    trained here on captions: (folder, reference tokenizer, reference model)."""
    import sentencepiece as spm
    import torch

    port = _bleurt_port()
    folder = tmp_path_factory.mktemp("tiny_bleurt")
    corpus = folder / "corpus.txt"
    lines = [official_normalise(t) for pair in PAIRS for t in pair] * 20
    corpus.write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "spm"),
        vocab_size=48,
        hard_vocab_limit=False,
        minloglevel=2,
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
        pad_id=0,
        pad_piece="[PAD]",
        unk_id=1,
        unk_piece="[UNK]",
        bos_id=-1,
        eos_id=-1,
    )
    config = port.BleurtConfig(
        vocab_size=120,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = port.BleurtForSequenceClassification(config).eval()
    with torch.no_grad():  # a spread of outputs, not ~0 everywhere
        model.classifier.weight.normal_(0, 2.0)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(config.to_json_string(), encoding="utf-8")
    from bleurt_pytorch.bleurt.tokenization_bleurt_sp import BleurtSPTokenizer

    return folder, BleurtSPTokenizer(vocab_file=str(folder / "spm.model")), model


def test_bleurt_equals_the_port(tiny_bleurt: tuple[Path, Any, Any]) -> None:
    """The evaluator's compute_bleurt with the port's own model and tokenizer."""
    import torch

    folder, tokenizer, model = tiny_bleurt
    pairs = [*PAIRS, *EDGE_PAIRS]
    refs = [official_normalise(r) for _, r in pairs]
    cands = [official_normalise(p) for p, _ in pairs]
    with torch.no_grad():
        inputs = tokenizer(
            refs, cands, padding="longest", return_tensors="pt", truncation=True, max_length=512
        )
        expected = model(**inputs).logits.flatten().tolist()
    options = parse_options("imageclef_bleurt", {"model": str(folder)})
    score = compute_metrics(
        [("imageclef_bleurt", options)], [p for p, _ in pairs], [r for _, r in pairs], resamples=0
    )["imageclef_bleurt"]
    assert score.per_sample == pytest.approx(expected, abs=TOL)
    assert score.value == pytest.approx(statistics.fmean(expected), abs=TOL)
    assert max(expected) - min(expected) > 0.01  # the pairs are told apart


def test_bleurt_checkpoint_with_foreign_keys_fails(tmp_path: Path) -> None:
    import torch

    (tmp_path / "config.json").write_text(
        json.dumps({"vocab_size": 10, "hidden_size": 8, "num_attention_heads": 2})
    )
    torch.save({"something.else": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    options = parse_options("imageclef_bleurt", {"model": str(tmp_path)})
    with pytest.raises(MetricUnavailable, match="keys that do not fit"):
        compute_metrics([("imageclef_bleurt", options)], ["a"], ["b"], resamples=0)


# --- AlignScore on a tiny random checkpoint ------------------------------------------------------


@pytest.fixture
def punkt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NLTK's Punkt sentence splitter with empty (untrained) English parameters: the data
    cannot be downloaded here, and both sides of the check split with it."""
    import nltk

    english = tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (english / name).write_text("", encoding="utf-8")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data"), *nltk.data.path])


@pytest.fixture(scope="module")
def tiny_alignscore(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, encoder folder): a Lightning-style AlignScore checkpoint of a random tiny
    BERT encoder with the three heads, and the encoder's config and tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_alignscore")
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_path("all-MiniLM-L6-v2"))
    tokenizer.model_max_length = 48
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=48,
    )
    config.save_pretrained(folder)
    torch.manual_seed(0)
    encoder = BertModel(config)
    state = {f"base_model.{k}": v for k, v in encoder.state_dict().items()}
    for name, size in (("bin_layer", 2), ("tri_layer", 3), ("reg_layer", 1)):
        layer = torch.nn.Linear(32, size)
        torch.nn.init.normal_(layer.weight, std=3.0)  # probabilities with a spread
        state |= {f"{name}.{k}": v for k, v in layer.state_dict().items()}
    checkpoint = folder / "AlignScore-tiny.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"model": "bert"}}, checkpoint)
    return checkpoint, folder


def reference_alignscore(context: str, claim: str, checkpoint: Path, encoder_dir: Path) -> float:
    """AlignScore's Inferencer.inference_per_example in nli_sp mode, written out (its package
    cannot be installed beside transformers 5): BERTAlignModel's base model and tri_layer."""
    import torch
    from nltk.tokenize import sent_tokenize
    from transformers import AutoTokenizer, BertConfig, BertModel

    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    model = BertModel(BertConfig.from_pretrained(encoder_dir)).eval()
    model.load_state_dict({k[len("base_model.") :]: v for k, v in state.items() if "base" in k})
    tri = torch.nn.Linear(32, 3)
    tri.load_state_dict({"weight": state["tri_layer.weight"], "bias": state["tri_layer.bias"]})
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)

    premise_sents = sent_tokenize(context) or [""]
    n_chunk = len(context.strip().split()) // 350 + 1
    n_chunk = max(len(premise_sents) // n_chunk, 1)
    premise_sents = [
        " ".join(premise_sents[i : i + n_chunk]) for i in range(0, len(premise_sents), n_chunk)
    ]
    hypo_sents = sent_tokenize(claim)
    pre = [p for p in premise_sents for _ in hypo_sents]
    hyp = [h for _ in premise_sents for h in hypo_sents]
    batch = tokenizer(
        pre,
        hyp,
        truncation="only_first",
        padding="max_length",
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    )
    with torch.no_grad():
        pooled = model(**batch).pooler_output
        scores = torch.softmax(tri(pooled), dim=-1)[:, 0]
    table = scores.view(len(premise_sents), len(hypo_sents))
    return float(table.max(dim=0).values.mean().item())


@pytest.mark.usefixtures("punkt")
def test_alignscore_equals_its_inference_code(tiny_alignscore: tuple[Path, Path]) -> None:
    checkpoint, encoder_dir = tiny_alignscore
    pairs = [
        *PAIRS,
        ("Chest CT. No mass. Small effusion.", "CT of the chest. Left pleural effusion."),
        ("", ""),
    ]
    options = parse_options(
        "imageclef_alignscore", {"checkpoint": str(checkpoint), "base_model": str(encoder_dir)}
    )
    score = compute_metrics(
        [("imageclef_alignscore", options)],
        [p for p, _ in pairs],
        [r for _, r in pairs],
        resamples=0,
    )["imageclef_alignscore"]
    expected = [reference_alignscore(r, p, checkpoint, encoder_dir) for p, r in pairs[:-1]]
    assert score.per_sample == pytest.approx([*expected, 1.0], abs=TOL)
    assert max(expected) - min(expected) > 100 * TOL  # the pairs are told apart


@pytest.mark.usefixtures("punkt")
def test_factuality_with_alignscore_computed_names_only_the_substitutes(
    tiny_alignscore: tuple[Path, Path],
) -> None:
    checkpoint, encoder_dir = tiny_alignscore
    preds, refs = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    options = parse_options(
        "imageclef_factuality",
        {"alignscore_checkpoint": str(checkpoint), "alignscore_base_model": str(encoder_dir)},
    )
    fact = compute_metrics([("imageclef_factuality", options)], preds, refs, resamples=20)[
        "imageclef_factuality"
    ]
    assert fact.details["status"] == "partial" and "missing" not in fact.details
    parts = json.loads(str(fact.details["parts"]))
    assert set(parts) == {"medcat", "alignscore"}
    assert fact.value == pytest.approx((parts["medcat"] + parts["alignscore"]) / 2)
    assert "AlignScore-tiny.ckpt on" in str(fact.details["substitutes"])


# --- a run records the composites ----------------------------------------------------------------


def test_run_records_relevance_and_factuality_with_the_images(
    tmp_path: Path, repo_root: Path, tiny_clip: Path
) -> None:
    """A run hands its images to the similarity: relevance is computed from all three parts
    (partial only because of the offline backbones), factuality names its substitute."""
    from harness.records.layout import RECORD_FILE, run_dir
    from harness.records.store import read_record

    text = (repo_root / "tasks/rocov2_sample.yaml").read_text(encoding="utf-8")
    text = text.replace("./data/rocov2_sample", str(repo_root / "tasks/data/rocov2_sample"))
    text = text.replace("max_new_tokens: 128", "max_new_tokens: 8")
    text = text.replace("seeds: [0, 1, 2]", "seeds: [0]") + "limit: 4\n"
    head, _, tail = text.partition("metric_list:\n")
    metrics = (
        "metric_list:\n"
        "  - metric: imageclef_relevance\n"
        f"    kwargs: {{bertscore_model: '{MINILM}', image_backbone: 'clip:{tiny_clip}'}}\n"
        "  - metric: imageclef_factuality\n"
        "    kwargs: {substitute_vocabulary: manual}\n"
    )
    tail = tail[tail.index("seeds:") :]
    task = tmp_path / "rocov2_sample.yaml"
    task.write_text(head + metrics + tail, encoding="utf-8")
    results = tmp_path / "results"
    run = ["run", "--task", str(task), "--variant", "tiny-llava", "--results", str(results)]
    assert main([*run, "--no-progress", "--device", "cpu"]) == 0
    record = read_record(run_dir(results, "rocov2_sample", "tiny-llava", 0) / RECORD_FILE)

    relevance = record.metrics["imageclef_relevance"]
    assert relevance.details["status"] == "partial"
    assert "missing" not in relevance.details  # the similarity got the run's images
    parts = json.loads(str(relevance.details["parts"]))
    assert set(parts) == {"bertscore", "rouge_1", "similarity"}
    assert relevance.value == pytest.approx(statistics.fmean(parts.values()))
    substitutes = str(relevance.details["substitutes"])
    assert MINILM in substitutes and f"clip:{tiny_clip}" in substitutes
    assert relevance.ci95 is not None and relevance.n == 4

    factuality = record.metrics["imageclef_factuality"]
    assert factuality.details["status"] == "partial"
    assert "concept_f1 (vocabulary manual)" in str(factuality.details["substitutes"])


def test_unknown_bundled_backbone_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = _write_pairs(tmp_path / "p.jsonl", PAIRS[:1])
    args = ["score", "--pairs", str(pairs), "--bertscore-model", "bundled:nope", "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown bundled backbone bundled:nope" in err
