# The "13a" tokenization of the WMT scoring script mteval-v13a.pl, as implemented by sacrebleu
# (https://github.com/mjpost/sacrebleu, Apache License 2.0) and used by the standard evaluate-metric/bleu
# module. Licensed under the Apache License, Version 2.0: http://www.apache.org/licenses/LICENSE-2.0
# Distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""mteval-v13a tokenization: split off punctuation and symbols; periods and commas only when not inside a
number ("3.5" stays, "end." splits); a dash after a digit is split off. Returns a list of tokens."""

import re
from functools import lru_cache

_RULES = [
    # every ASCII symbol except period, comma, apostrophe and dash: { | } ~ [ \ ] ^ _ ` space ! " # $ % &
    # ( ) * + : ; < = > ? @ /
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma not preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period/comma not followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash preceded by a digit
]
_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))


class Tokenizer13a:
    """``Tokenizer13a()(line) -> list[str]`` (callable, cached)."""

    def signature(self):
        return "13a"

    @staticmethod
    @lru_cache(maxsize=2**16)
    def _tokenize(line):
        line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
        if "&" in line:
            for entity, char in _ENTITIES:
                line = line.replace(entity, char)
        line = f" {line} "
        for pattern, repl in _RULES:
            line = pattern.sub(repl, line)
        return tuple(line.split())

    def __call__(self, line):
        return list(self._tokenize(line))
