"""F1 as an `evaluate` metric, shipped with perennial so nothing is fetched from the Hub."""

import datasets
from sklearn.metrics import f1_score

import evaluate

_DESCRIPTION = """\
The F1 score is the harmonic mean of precision and recall: F1 = 2 * (P * R) / (P + R).
For several classes, `average` says how per-class scores are combined; perennial uses "macro"
(unweighted mean over classes) so that small classes count as much as large ones.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): Ground-truth class ids.
    labels (`list` of `int`): Classes to include when averaging. Defaults to those present.
    pos_label (`int`): The positive class when `average="binary"`. Defaults to 1.
    average (`str`): One of "macro" (default), "micro", "weighted", "binary", or None (per class).
    sample_weight (`list` of `float`): Optional per-row weights. Defaults to None.
Returns:
    f1 (`float` or `list` of `float`): The F1 score, or one per class when `average=None`.
Examples:
    >>> metric = evaluate.load("path/to/f1")
    >>> metric.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'f1': 0.7333333333333334}
"""

_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and
          Grisel, O. and Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and
          Vanderplas, J. and Passos, A. and Cournapeau, D. and Brucher, M. and Perrot, M. and
          Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"
            ],
        )

    def _compute(
        self, predictions, references, labels=None, pos_label=1, average="macro", sample_weight=None
    ):
        # zero_division=0: a class absent from both lists scores 0 instead of raising a warning.
        score = f1_score(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
            zero_division=0,
        )
        return {"f1": score.tolist() if getattr(score, "size", 1) > 1 else float(score)}
