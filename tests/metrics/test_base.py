"""What every metric shares: inputs paired by position, registration with label and order."""

from __future__ import annotations

import pytest

from harness.metrics import METRICS, References, compute_metrics, parse_options
from harness.metrics.profiles import default_metrics


def test_references_pair_concepts_with_texts() -> None:
    refs = References(("a", "b"), (("C1",), None))
    assert refs.concepts_or_none() == [("C1",), None]
    assert References(("a",)).concepts_or_none() == [None]
    assert refs.subset([1]) == References(("b",), (None,))
    with pytest.raises(ValueError, match="1 reference concept lists for 2 references"):
        References(("a", "b"), (("C1",),))


def test_concept_metrics_use_the_concepts_they_are_given() -> None:
    """The dataset's concepts reach the metric with the samples, not through any side channel."""
    requests = [("concept_f1", parse_options("concept_f1", {}))]
    prediction = ["ct of the chest"]
    extracted = compute_metrics(requests, prediction, ["ct of the chest"], resamples=0)
    assert extracted["concept_f1"].details["reference_concepts"] == "extracted"
    unrelated = References(("ct of the chest",), (("C0000000",),))
    given = compute_metrics(requests, prediction, unrelated, resamples=0)
    assert given["concept_f1"].details["reference_concepts"] == "dataset"
    assert given["concept_f1"].value == 0.0 < extracted["concept_f1"].value


def test_every_metric_has_a_label_and_table_order() -> None:
    names = default_metrics()
    # the ImageCLEF evaluator's metrics need heavy backbones: named when wanted, never default
    heavy = {n for n in METRICS.names() if n.startswith("imageclef_")}
    assert set(names) == set(METRICS.names()) - heavy
    orders = [METRICS.get(n).order for n in names]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    every = [METRICS.get(n) for n in METRICS.names()]
    assert all(m.label for m in every) and len({m.order for m in every}) == len(every)
    assert names[:2] == ("bleu1", "bleu4")  # Table I's order


def test_registered_bounds_hold_at_the_extremes() -> None:
    """Each default metric's registered bounds (the page cuts its intervals to them) contain
    what it gives for identical, unrelated and empty captions, and are finite where a share."""
    from harness.metrics import SHARE
    from harness.specs import catalog

    task = catalog.task("rocov2_sample")
    requests = [(m.metric, parse_options(m.metric, m.kwargs)) for m in task.metric_list]
    references = ["CT of the chest shows a mass in the left lung.", "Axial MRI of the knee."] * 2
    predictions = [references[0], "zzz qqq", "", "MRI of the knee"]
    scores = compute_metrics(requests, predictions, References(tuple(references)), resamples=0)
    eps = 1e-12  # sacrebleu's sentence BLEU of an identical pair is 100.00000000000004 / 100
    for name, score in scores.items():
        lo, hi = METRICS.get(name).bounds
        values = [score.value, *(score.per_sample or [])]
        assert all(lo - eps <= v <= hi + eps for v in values), name
    shares = {"bleu4", "rouge_l", "meteor", "concept_f1", "modality_acc"}
    assert all(METRICS.get(n).bounds == SHARE for n in shares)
    assert METRICS.get("cider").bounds == (0.0, 10.0)
