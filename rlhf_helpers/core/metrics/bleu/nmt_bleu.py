# BLEU and smooth-BLEU, as computed by `compute_bleu` in tensorflow/nmt (nmt/scripts/bleu.py,
# Copyright 2017 Google Inc.), the function the standard evaluate-metric/bleu module wraps. That code is
# licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and limitations under the License.
# ==============================================================================================================
"""Corpus BLEU (Papineni et al., 2002) with the optional add-one smoothing of Lin & Och (2004).

Same signature, semantics and return value as tensorflow/nmt's ``compute_bleu``:

* n-gram matches are clipped by the highest count of that n-gram in any of the example's references and
  summed over the corpus, per order 1..max_order; precision p_n = matches_n / possible_n
  (smoothed: (matches_n + 1) / (possible_n + 1));
* BLEU = BP * exp(mean_n log p_n), 0 when any p_n is 0;
* brevity penalty BP = 1 if c > r else exp(1 - r / c), with c the total translation length and r the sum over
  examples of the *shortest* reference's length (BP = 0 when c or r is 0).
"""

import math
from collections import Counter


def _ngram_counts(tokens, max_order):
    """Counter of every n-gram (as a tuple) of ``tokens`` for n = 1..max_order."""
    counts = Counter()
    for n in range(1, max_order + 1):
        counts.update(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return counts


def compute_bleu(reference_corpus, translation_corpus, max_order=4, smooth=False):
    """BLEU of tokenized translations against tokenized references.

    Args:
        reference_corpus: per example, a list of references, each a list of tokens.
        translation_corpus: per example, the translation as a list of tokens.
        max_order: highest n-gram order.
        smooth: add-one smoothing of every precision (Lin & Och, 2004).

    Returns:
        (bleu, precisions, brevity_penalty, length_ratio, translation_length, reference_length)
    """
    matches = [0] * max_order
    possible = [0] * max_order
    reference_length = translation_length = 0
    for references, translation in zip(reference_corpus, translation_corpus, strict=True):
        reference_length += min(len(r) for r in references)
        translation_length += len(translation)
        best_ref_counts = Counter()
        for reference in references:
            best_ref_counts |= _ngram_counts(reference, max_order)  # elementwise max over references
        clipped = _ngram_counts(translation, max_order) & best_ref_counts  # elementwise min = clipping
        for ngram, count in clipped.items():
            matches[len(ngram) - 1] += count
        for n in range(1, max_order + 1):
            possible[n - 1] += max(0, len(translation) - n + 1)

    if smooth:
        precisions = [(m + 1.0) / (p + 1.0) for m, p in zip(matches, possible, strict=True)]
    else:
        precisions = [m / p if p > 0 else 0.0 for m, p in zip(matches, possible, strict=True)]
    geo_mean = math.exp(sum(math.log(p) for p in precisions) / max_order) if min(precisions) > 0 else 0

    if reference_length == 0 or translation_length == 0:
        ratio = bp = 0.0
    else:
        ratio = translation_length / reference_length
        bp = 1.0 if ratio > 1.0 else math.exp(1 - 1.0 / ratio)
    return geo_mean * bp, precisions, bp, ratio, translation_length, reference_length
