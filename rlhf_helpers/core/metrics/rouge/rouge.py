# ROUGE as an `evaluate` metric module that works offline, shipped with the RLHF course.
#
# It reproduces the behaviour and interface of the standard evaluate-metric/rouge module on the Hugging Face
# Hub (Copyright 2020 The HuggingFace Evaluate Authors), which is licensed under the Apache License,
# Version 2.0 (the "License"); you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and limitations under the License.
#
# Why it is shipped: `evaluate.load("rouge")` downloads the module from the Hub, which a workshop machine
# without internet cannot do. `evaluate.load("<path to this folder>")` loads this file instead; the scores
# come from Google's `rouge_score` package exactly as with the Hub module.
"""ROUGE metric (Lin, 2004) computed with Google Research's ``rouge_score`` package."""

import datasets
import evaluate
from rouge_score import rouge_scorer, scoring

_CITATION = """\
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    month = jul,
    year = "2004",
    address = "Barcelona, Spain",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W04-1013",
    pages = "74--81",
}
"""

_DESCRIPTION = """\
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares a generated text with one or more
reference texts by their overlap: of unigrams (rouge1), bigrams (rouge2), or the longest common subsequence
(rougeL; rougeLsum splits the texts into sentences at newlines first). Case is ignored.
Scores come from Google Research's reimplementation, the `rouge_score` package:
https://github.com/google-research/google-research/tree/master/rouge
"""

_KWARGS_DESCRIPTION = """
Mean ROUGE F1 of a list of predictions against their references.
Args:
    predictions: list of strings, one per example.
    references: list of strings (one reference per example) or list of lists of strings (several references;
        each example keeps its best-scoring reference, `RougeScorer.score_multi`).
    rouge_types: ROUGE variants to compute, default ["rouge1", "rouge2", "rougeL", "rougeLsum"];
        "rouge{n}" for any n-gram order n.
    use_aggregator: True (default): one number per type, the mean F1 over the examples (the `mid` value of
        rouge_score's BootstrapAggregator); False: one F1 per example.
    use_stemmer: apply the Porter stemmer to words before matching (default False).
    tokenizer: optional callable str -> list[str] replacing rouge_score's default tokenizer.
Returns:
    dict {rouge_type: float} (or {rouge_type: list[float]} when use_aggregator=False).
Examples:
    >>> rouge = evaluate.load("path/to/rlhf_helpers/core/metrics/rouge")
    >>> rouge.compute(predictions=["hello there", "general kenobi"], references=["hello there", "general kenobi"])
    {'rouge1': 1.0, 'rouge2': 1.0, 'rougeL': 1.0, 'rougeLsum': 1.0}
"""

DEFAULT_ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


class _CallableTokenizer:
    """rouge_score expects an object with a ``tokenize(text)`` method; this wraps a plain function."""

    def __init__(self, func):
        self.func = func

    def tokenize(self, text):
        return self.func(text)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({
                    "predictions": datasets.Value("string", id="sequence"),
                    "references": datasets.Sequence(datasets.Value("string", id="sequence")),
                }),
                datasets.Features({
                    "predictions": datasets.Value("string", id="sequence"),
                    "references": datasets.Value("string", id="sequence"),
                }),
            ],
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=[
                "https://en.wikipedia.org/wiki/ROUGE_(metric)",
                "https://github.com/google-research/google-research/tree/master/rouge",
            ],
        )

    def _compute(self, predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=False,
                 tokenizer=None):
        rouge_types = list(rouge_types or DEFAULT_ROUGE_TYPES)
        scorer = rouge_scorer.RougeScorer(
            rouge_types=rouge_types,
            use_stemmer=use_stemmer,
            tokenizer=None if tokenizer is None else _CallableTokenizer(tokenizer),
        )
        several = len(references) > 0 and isinstance(references[0], list)
        per_example = [
            scorer.score_multi(ref, pred) if several else scorer.score(ref, pred)
            for ref, pred in zip(references, predictions, strict=True)
        ]
        if not use_aggregator:
            return {key: [s[key].fmeasure for s in per_example] for key in rouge_types}
        aggregator = scoring.BootstrapAggregator()
        for s in per_example:
            aggregator.add_scores(s)
        return {key: value.mid.fmeasure for key, value in aggregator.aggregate().items()}
