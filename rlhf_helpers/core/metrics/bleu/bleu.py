# BLEU as an `evaluate` metric module that works offline, shipped with the RLHF course.
#
# It reproduces the behaviour and interface of the standard evaluate-metric/bleu module on the Hugging Face
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
# The score is tensorflow/nmt's `compute_bleu` (nmt_bleu.py in this folder) on 13a-tokenized text
# (tokenizer_13a.py). Unlike the Hub module, the relative imports below carry no "# From: <url>" comment, so
# `evaluate.load("<path to this folder>")` copies the two local files instead of downloading them.
"""BLEU metric (Papineni et al., 2002): tensorflow/nmt's compute_bleu on mteval-13a tokens."""

import datasets
import evaluate

from .nmt_bleu import compute_bleu
from .tokenizer_13a import Tokenizer13a

_CITATION = """\
@inproceedings{papineni-etal-2002-bleu,
    title = "{B}leu: a Method for Automatic Evaluation of Machine Translation",
    author = "Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing",
    booktitle = "Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics",
    year = "2002",
    pages = "311--318",
}
@inproceedings{lin-och-2004-orange,
    title = "{ORANGE}: a Method for Evaluating Automatic Evaluation Metrics for Machine Translation",
    author = "Lin, Chin-Yew and Och, Franz Josef",
    booktitle = "{COLING} 2004",
    year = "2004",
    pages = "501--507",
}
"""

_DESCRIPTION = """\
BLEU (Bilingual Evaluation Understudy) scores generated text by its n-gram precision against one or more
references (n = 1..4, counts clipped by the references), combined by a geometric mean and multiplied by a
brevity penalty for outputs shorter than the references. It is a corpus-level score: counts are summed over
all examples before the precisions are taken. It ignores meaning, fluency and preference.
"""

_KWARGS_DESCRIPTION = """
Corpus BLEU of predictions against their references.
Args:
    predictions: list of strings.
    references: list of strings (one reference each) or list of lists of strings (several references each).
    tokenizer: callable str -> list[str]; default: the mteval-v13a tokenizer used by WMT.
    max_order: highest n-gram order (default 4).
    smooth: add-one smoothing of the precisions (Lin & Och, 2004), default False.
Returns:
    'bleu': float in [0, 1], 'precisions': list of the n-gram precisions, 'brevity_penalty',
    'length_ratio' (translation / reference length), 'translation_length', 'reference_length'.
Examples:
    >>> bleu = evaluate.load("path/to/rlhf_helpers/core/metrics/bleu")
    >>> bleu.compute(predictions=["hello there general kenobi"], references=[["hello there general kenobi"]])["bleu"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({
                    "predictions": datasets.Value("string", id="sequence"),
                    "references": datasets.Sequence(datasets.Value("string", id="sequence"), id="references"),
                }),
                datasets.Features({
                    "predictions": datasets.Value("string", id="sequence"),
                    "references": datasets.Value("string", id="sequence"),
                }),
            ],
            codebase_urls=["https://github.com/tensorflow/nmt/blob/master/nmt/scripts/bleu.py"],
            reference_urls=["https://en.wikipedia.org/wiki/BLEU"],
        )

    def _compute(self, predictions, references, tokenizer=None, max_order=4, smooth=False):
        tokenizer = tokenizer or Tokenizer13a()
        if len(references) > 0 and isinstance(references[0], str):
            references = [[ref] for ref in references]
        bleu, precisions, bp, ratio, translation_length, reference_length = compute_bleu(
            reference_corpus=[[tokenizer(r) for r in refs] for refs in references],
            translation_corpus=[tokenizer(p) for p in predictions],
            max_order=max_order,
            smooth=smooth,
        )
        return {
            "bleu": bleu,
            "precisions": precisions,
            "brevity_penalty": bp,
            "length_ratio": ratio,
            "translation_length": translation_length,
            "reference_length": reference_length,
        }
