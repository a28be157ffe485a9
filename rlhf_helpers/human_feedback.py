"""Notebook 08: human feedback. Pairs of the SFT policy's answers are labelled -- by you in a widget, or by a
simulated annotator with a stated taste -- and the labels train a reward model that a short PPO run optimises.

* :func:`sample_pairs` -- two sampled answers per prompt, each pair with an id and the settings that made it;
  :func:`save_pairs` / :func:`load_pairs` keep them beside the labels.
* :class:`LabelSession` -- the labelling logic without a screen: the next pair, which answer sits left (random
  per pair and annotator), a button press, undo, progress. Every press is appended to the annotator's label file
  the moment it is given (:func:`rlhf_helpers.core.artifacts.append_record`), so a restarted kernel resumes.
* :class:`LabelWidget` -- the session in ipywidgets: buttons, keyboard shortcuts (ipyevents), a reason tag.
* :class:`SimulatedAnnotator` -- a taste over the gold judge's criteria plus a word-count preference, with
  Bradley-Terry noise and a tie margin: it presses the same buttons, so its labels go through the same file.
* :func:`read_labels`, :func:`merge_labels`, :func:`agreement_table`, :func:`disagreements` -- the workshop loop.
* :func:`label_pairs_dataset`, :func:`with_course_pairs`, :func:`train_on_labels`, :func:`reward_agreement` -- from
  labels to a reward model; :func:`judge_agreement` -- the same count against the judge's order.
* :func:`simulate_labels`, :func:`answer_pairs`, :func:`duel_table`, :func:`plot_differences` -- the exercises'
  solutions: a simulated annotator's fresh label file, two policies' answers as pairs to label (and who prefers
  which), the paired differences as a figure.

A label file is JSON Lines, one event per line: ``{"event": "label", "pair_id", "annotator", "button": "A"|"B"|
"tie"|"skip", "choice": 0|1|"tie"|"skip", "left": 0|1, "reason", "time", "model", "sampling"}`` (``choice``: the index
of the preferred answer in the pair's ``answers``, whichever side it was shown on) or ``{"event": "undo",
"pair_id", "annotator", "time"}`` (takes back that annotator's latest label of that pair).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import judge
from .core.artifacts import Paths, append_record, read_numbered_records, write_jsonl
from .core.config import FeedbackConfig, Profile

BUTTONS = ("A", "B", "tie", "skip")  # A = the answer shown on the left, B = on the right
KEYS = {"a": "A", "b": "B", "t": "tie", "s": "skip", "ArrowLeft": "A", "ArrowRight": "B", "u": "undo"}
REASONS = ("", "shorter", "more helpful", "more polite", "on topic", "other")  # the optional reason tag
CHOICES = (0, 1, "tie", "skip")


def feedback_dir(paths: Paths) -> Path:
    """``<output root>/feedback``: the pairs and every annotator's label file."""
    return paths.root / "feedback"


def label_file(paths: Paths, annotator: str) -> Path:
    """``feedback/labels_<annotator>.jsonl`` (one file per person: nobody writes into another's file)."""
    if not annotator or not all(c.isalnum() or c in "-_" for c in annotator):
        raise ValueError(f"annotator name {annotator!r}: use letters, digits, '-' or '_' (it names a file)")
    return feedback_dir(paths) / f"labels_{annotator}.jsonl"


# ============================================================================================ the pairs
def sample_pairs(policy: Any, tokenizer: Any, prompts: Sequence[str], gen_cfg: Any, pairs_per_prompt: int = 1,
                 model_name: str = "sft_full", progress: bool = True) -> list[dict[str, Any]]:
    """``pairs_per_prompt`` pairs of sampled answers per prompt (one ``generate`` call: each prompt repeated
    ``2 * pairs_per_prompt`` times). Each pair: ``{"pair_id", "prompt", "answers": [a0, a1], "model",
    "sampling"}``; ids ``p00000``... in prompt order. A pair whose two answers are the same text is left out
    (nothing to choose between)."""
    from .core import generation

    repeat = 2 * pairs_per_prompt
    answers = generation.generate(policy, tokenizer, [p for p in prompts for _ in range(repeat)], gen_cfg,
                                  desc="sampling pairs", progress=progress)
    sampling = {k: getattr(gen_cfg, k) for k in ("temperature", "top_k", "top_p", "max_new_tokens", "seed")}
    pairs = []
    for i, prompt in enumerate(prompts):
        for j in range(pairs_per_prompt):
            k = i * repeat + 2 * j
            if answers[k] == answers[k + 1]:
                continue
            pairs.append({"pair_id": f"p{len(pairs):05d}", "prompt": prompt, "answers": answers[k : k + 2],
                          "model": model_name, "sampling": sampling})
    return pairs


def split_pairs(pairs: Sequence[Mapping[str, Any]], heldout_share: float, seed: int = 0
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, heldout) by *prompt*: the held-out pairs' prompts appear in no training pair."""
    prompts = sorted(dict.fromkeys(p["prompt"] for p in pairs))
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: round(heldout_share * len(prompts))])
    return [dict(p) for p in pairs if p["prompt"] not in held], [dict(p) for p in pairs if p["prompt"] in held]


def save_pairs(pairs: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """The pairs as JSON Lines, written atomically."""
    return write_jsonl(pairs, path)


def load_pairs(path: str | Path) -> list[dict[str, Any]]:
    """Pairs written by :func:`save_pairs`; a record without ``pair_id``, ``prompt`` or two ``answers`` raises a
    ValueError naming the file, line and field."""
    numbered = read_numbered_records(path)
    for line, p in numbered:
        for key in ("pair_id", "prompt", "answers"):
            if key not in p:
                raise ValueError(f"{path}:{line}: field '{key}' missing")
        if not (isinstance(p["answers"], list) and len(p["answers"]) == 2):
            raise ValueError(f"{path}:{line}: field 'answers' must hold two answers")
    return [p for _, p in numbered]


# ============================================================================================ label files
def _check_event(path: Path, line: int, r: Mapping[str, Any], known: Mapping[str, Any] | None) -> None:
    """Raise a ValueError naming the file, line and field of a malformed label event."""
    def bad(field: str, why: str) -> ValueError:
        return ValueError(f"{path}:{line}: field '{field}' {why}")

    for key in ("event", "pair_id", "annotator"):
        if not isinstance(r.get(key), str) or not r[key]:
            raise bad(key, "missing or not a string")
    if r["event"] not in ("label", "undo"):
        raise bad("event", f"is {r['event']!r}, expected 'label' or 'undo'")
    if known is not None and r["pair_id"] not in known:
        raise bad("pair_id", f"{r['pair_id']!r} is not one of the {len(known)} pairs")
    if r["event"] == "label":
        if r.get("button") not in BUTTONS:
            raise bad("button", f"is {r.get('button')!r}, expected one of {BUTTONS}")
        if r.get("choice") not in CHOICES:
            raise bad("choice", f"is {r.get('choice')!r}, expected one of {CHOICES}")


def replay(path: str | Path, annotator: str | None = None, pairs: Mapping[str, Any] | None = None
           ) -> dict[str, list[dict[str, Any]]]:
    """The labels in force in a label file, per annotator: ``{annotator: [label event, ...]}`` in the order they
    were given, each undo having removed that annotator's latest label of its pair. ``annotator``: only that one's.
    ``pairs`` (id -> pair): a label of an unknown pair raises. A missing file = no labels."""
    path = Path(path)
    if not path.exists():
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for line, r in read_numbered_records(path):
        _check_event(path, line, r, pairs)
        if annotator is not None and r["annotator"] != annotator:
            continue
        given = out.setdefault(r["annotator"], [])
        if r["event"] == "label":
            given.append(r)
            continue
        last = next((k for k in range(len(given) - 1, -1, -1) if given[k]["pair_id"] == r["pair_id"]), None)
        if last is None:
            raise ValueError(f"{path}:{line}: field 'pair_id' {r['pair_id']!r}: an undo with no label before it")
        del given[last]
    return out


class LabelSession:
    """One annotator labelling ``pairs`` into ``path``: the logic of :class:`LabelWidget`, without a screen.

    The pairs are offered in order, skipping those this annotator already labelled in ``path`` (so a new session
    on the same file resumes). Which answer is shown left is random per (annotator, pair) and stable across
    restarts. Labels by other annotators, or of pairs not in ``pairs``, in the same file are kept and ignored.
    """

    def __init__(self, pairs: Sequence[Mapping[str, Any]], path: str | Path, annotator: str, seed: int = 0):
        if not pairs:
            raise ValueError("LabelSession needs at least one pair")
        self.pairs = {p["pair_id"]: p for p in pairs}
        self.order = [p["pair_id"] for p in pairs]
        self.path, self.annotator, self.seed = Path(path), annotator, seed
        self.given = [r for r in replay(self.path, annotator).get(annotator, []) if r["pair_id"] in self.pairs]

    @property
    def labelled(self) -> set[str]:
        return {r["pair_id"] for r in self.given}

    @property
    def current(self) -> dict[str, Any] | None:
        """The next pair without a label from this annotator (None: all done)."""
        done = self.labelled
        return next((self.pairs[i] for i in self.order if i not in done), None)

    def left(self, pair_id: str) -> int:
        """Index (0 or 1) of the answer shown on the left for this annotator."""
        digest = hashlib.sha256(f"{self.seed}/{self.annotator}/{pair_id}".encode()).digest()
        return digest[0] % 2

    def shown(self) -> tuple[str, str] | None:
        """(left answer, right answer) of the current pair."""
        pair = self.current
        if pair is None:
            return None
        i = self.left(pair["pair_id"])
        return pair["answers"][i], pair["answers"][1 - i]

    def press(self, button: str, reason: str = "") -> dict[str, Any]:
        """Label the current pair (``button`` in :data:`BUTTONS`); the event is appended to the file at once."""
        if button not in BUTTONS:
            raise ValueError(f"button {button!r}: expected one of {BUTTONS}")
        pair = self.current
        if pair is None:
            raise RuntimeError(f"{self.annotator} has labelled all {len(self.order)} pairs")
        left = self.left(pair["pair_id"])
        choice: int | str = {"A": left, "B": 1 - left}.get(button, button)
        record = {"event": "label", "pair_id": pair["pair_id"], "annotator": self.annotator, "button": button,
                  "choice": choice, "left": left, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "model": pair.get("model"), "sampling": pair.get("sampling")}
        append_record(self.path, record)
        self.given.append(record)
        return record

    def undo(self) -> str | None:
        """Take back this annotator's latest label (appended as an undo event); its pair comes back first.
        Returns the pair id, or None when there was nothing to undo."""
        if not self.given:
            return None
        pair_id = self.given[-1]["pair_id"]
        append_record(self.path, {"event": "undo", "pair_id": pair_id, "annotator": self.annotator,
                                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.given.pop()
        self.order.remove(pair_id)
        self.order.insert(0, pair_id)
        return pair_id

    @property
    def progress(self) -> tuple[int, int]:
        """(labelled, total)."""
        return len(self.given), len(self.order)


# ================================================================================================ the widget
def _answer_html(title: str, text: str) -> str:
    import html

    return (f"<div style='border:1px solid #999;border-radius:6px;padding:8px;min-height:90px'><b>{title}</b>"
            f"<br>{html.escape(text) or '<i>(empty answer)</i>'}</div>")


def _enable_colab_widgets() -> None:
    """Colab renders third-party widgets (ipyevents) only with its custom widget manager."""
    from .notebook_setup import on_colab

    if on_colab():
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()


class LabelWidget:
    """A :class:`LabelSession` on screen: the prompt, answers A (left) and B (right), buttons "A is better",
    "B is better", "tie", "skip", "undo", a reason tag and a progress count. Keys while the mouse is over the
    widget: ``a`` / ``←``, ``b`` / ``→``, ``t``, ``s``, ``u`` (ipyevents; the notebook's own shortcuts are off
    there). Display it as the last expression of a cell (``widget``) or with ``display(widget.box)``."""

    def __init__(self, session: LabelSession):
        import ipywidgets as w
        from ipyevents import Event

        _enable_colab_widgets()
        self.session = session
        self.prompt, self.answers, self.status = w.HTML(), [w.HTML(), w.HTML()], w.HTML()
        labels = {"A": "A is better (a)", "B": "B is better (b)", "tie": "tie (t)", "skip": "skip (s)",
                  "undo": "undo (u)"}
        self.buttons = {k: w.Button(description=v, layout=w.Layout(width="140px")) for k, v in labels.items()}
        for key, button in self.buttons.items():
            button.on_click(lambda _, key=key: self.handle(key))
        self.reason = w.Dropdown(options=REASONS, value="", description="reason")
        self.box = w.VBox([self.status, self.prompt,
                           w.HBox([w.Box([a], layout=w.Layout(width="50%")) for a in self.answers]),
                           w.HBox(list(self.buttons.values())), self.reason])
        self.box.add_class("rlhf-label-widget")
        self.events = Event(source=self.box, watched_events=["keydown"], prevent_default_action=True)
        self.events.on_dom_event(lambda event: self.handle(KEYS.get(event.get("key", ""), "")))
        self.render()

    def handle(self, action: str) -> None:
        """A button or key: one of :data:`BUTTONS` or ``"undo"`` (anything else, or a press after the last pair,
        is ignored)."""
        if action == "undo":
            self.session.undo()
        elif action in BUTTONS and self.session.current is not None:
            self.session.press(action, self.reason.value)
            self.reason.value = ""
        self.render()

    def render(self) -> None:
        done, total = self.session.progress
        shown = self.session.shown()
        self.status.value = (f"<b>{self.session.annotator}</b>: {done} / {total} labelled "
                             f"(saved to <code>{self.session.path.name}</code> at each press)")
        if shown is None:
            self.prompt.value, shown = "<b>All pairs labelled.</b> Thank you!", ("", "")
        else:
            self.prompt.value = f"<b>Prompt</b>: {self.session.current['prompt']}"
        for box, title, text in zip(self.answers, ("A", "B"), shown, strict=True):
            box.value = _answer_html(title, text) if text or self.session.current else ""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


# ===================================================================================== simulated annotator
@dataclass
class SimulatedAnnotator:
    """A labeller with a stated taste and noise, so the notebook runs unattended.

    Utility of an answer: ``sum_c weights[c] * gold_breakdown[c] - per_word * words`` (``weights=None``: the gold
    judge's total). Between two answers with utility difference ``d`` it calls a tie when ``|d| < tie_margin``,
    else prefers the first with probability ``sigmoid(d / noise)`` (Bradley-Terry: small ``noise`` = decisive).
    """

    name: str
    per_word: float = 0.0  # > 0: prefers shorter answers (utility per word)
    noise: float = 0.02  # Bradley-Terry temperature, in utility units
    tie_margin: float = 0.0  # |d| below this: "tie"
    weights: Mapping[str, float] | None = None  # over judge.CRITERIA; None: the judge's total
    seed: int = 0

    def utility(self, prompt: str, answer: str) -> float:
        parts = judge.gold_breakdown(prompt, answer)
        value = parts["total"] if self.weights is None else sum(w * parts[c] for c, w in self.weights.items())
        return value - self.per_word * len(answer.split())

    def choose(self, pair: Mapping[str, Any], rng: np.random.Generator) -> int | str:
        """0, 1 (the preferred answer's index) or ``"tie"``."""
        d = self.utility(pair["prompt"], pair["answers"][0]) - self.utility(pair["prompt"], pair["answers"][1])
        if abs(d) < self.tie_margin:
            return "tie"
        return 0 if rng.random() < 1.0 / (1.0 + np.exp(-d / self.noise)) else 1

    def label(self, session: LabelSession, n: int | None = None) -> int:
        """Press the session's buttons for its next ``n`` pairs (None: all); returns how many were labelled."""
        rng = np.random.default_rng([self.seed, len(session.given)])
        count = 0
        while session.current is not None and (n is None or count < n):
            pair = session.current
            choice = self.choose(pair, rng)
            left = session.left(pair["pair_id"])
            session.press("tie" if choice == "tie" else ("A" if choice == left else "B"))
            count += 1
        return count

    @classmethod
    def from_config(cls, cfg: FeedbackConfig, name: str = "short-lover") -> SimulatedAnnotator:
        return cls(name, cfg.annotator_per_word, cfg.annotator_noise, cfg.annotator_tie_margin, seed=cfg.seed)


def simulate_labels(annotator: SimulatedAnnotator, pairs: Sequence[Mapping[str, Any]], paths: Paths,
                    num_labels: int | None = None, heldout: Sequence[Mapping[str, Any]] = ()) -> Path:
    """A fresh label file of ``annotator`` under ``paths`` (:func:`label_file`; an earlier one is replaced): it labels
    the first ``num_labels`` of ``pairs`` (None: all), then every pair of ``heldout``. Returns the file."""
    path = label_file(paths, annotator.name)
    path.unlink(missing_ok=True)
    annotator.label(LabelSession(pairs, path, annotator.name), num_labels)
    if heldout:
        annotator.label(LabelSession(heldout, path, annotator.name))
    return path


# ======================================================================================== the workshop loop
def read_labels(paths: Iterable[str | Path], pairs: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Every label in force in the given files: one row per (annotator, pair) with ``choice``, ``button``,
    ``reason``, ``time`` and ``file``. An annotator found in two files raises (merge one person's files first)."""
    known = {p["pair_id"]: p for p in pairs} if pairs is not None else None
    rows, seen = [], {}
    for path in paths:
        for annotator, given in replay(path, pairs=known).items():
            if annotator in seen:
                raise ValueError(f"annotator {annotator!r} labels in both {seen[annotator]} and {path}")
            seen[annotator] = path
            rows += [{"annotator": annotator, "pair_id": r["pair_id"], "choice": r["choice"], "button": r["button"],
                      "reason": r.get("reason", ""), "time": r.get("time"), "file": str(path)} for r in given]
    return pd.DataFrame(rows, columns=["annotator", "pair_id", "choice", "button", "reason", "time", "file"])


def merge_labels(paths: Iterable[str | Path], pairs: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The workshop view: pair_id x annotator, each cell the preferred answer (0 / 1 / "tie"); skips left out."""
    labels = read_labels(paths, pairs)
    labels = labels[labels.choice != "skip"]
    return labels.pivot(index="pair_id", columns="annotator", values="choice")


def score_answers(score: Callable[[list[str], list[str]], Any], pairs: Sequence[Mapping[str, Any]]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``score(prompts, answers)`` of each pair's answer 0 and answer 1: two float arrays ``[N]``."""
    prompts = [p["prompt"] for p in pairs]
    return tuple(np.asarray(score(prompts, [p["answers"][k] for p in pairs]), dtype=float) for k in (0, 1))


def judge_choices(pairs: Sequence[Mapping[str, Any]], scores: judge.Scores = judge.gold_scores,
                  name: str = "gold judge") -> pd.Series:
    """The judge as one more annotator, named ``name``: the index of the answer it scores higher ("tie" when
    equal)."""
    s0, s1 = score_answers(scores, pairs)
    choice = [0 if a > b else 1 if b > a else "tie" for a, b in zip(s0, s1, strict=True)]
    return pd.Series(choice, index=[p["pair_id"] for p in pairs], name=name)


AGREEMENT_COLUMNS = ["rater_1", "rater_2", "pairs", "ties_1", "ties_2", "agreement", "kappa", "agreement_no_ties"]


def cohen_kappa(x: Sequence[Any], y: Sequence[Any]) -> float:
    """Cohen's kappa of two label sequences: (p_o - p_e) / (1 - p_e), p_e from each rater's own label shares.
    (By hand: four lines, where scikit-learn would be a dependency for one function.)"""
    x, y = [str(v) for v in x], [str(v) for v in y]
    cats = sorted(set(x) | set(y))
    p_o = float(np.mean([a == b for a, b in zip(x, y, strict=True)]))
    p_e = sum((x.count(c) / len(x)) * (y.count(c) / len(y)) for c in cats)
    return 1.0 if p_e == 1 else (p_o - p_e) / (1 - p_e)


def agreement_table(merged: pd.DataFrame, extra: Mapping[str, pd.Series] | None = None) -> pd.DataFrame:
    """Every pair of raters (the annotators of ``merged`` plus ``extra``, e.g. the gold judge): pairs both
    labelled, the share each called a tie, raw agreement (same choice, ties included), Cohen's kappa, and the
    agreement on the pairs neither called a tie (``agreement_no_ties``, NaN when there are none)."""
    table = merged.copy()
    for name, series in (extra or {}).items():
        table[name] = series.reindex(table.index)
    rows = []
    names = list(table.columns)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = table[[a, b]].dropna().astype(str)
            if len(both):
                decided = both[(both[a] != "tie") & (both[b] != "tie")]
                rows.append({"rater_1": a, "rater_2": b, "pairs": len(both), "ties_1": float((both[a] == "tie").mean()),
                             "ties_2": float((both[b] == "tie").mean()), "agreement": float((both[a] == both[b]).mean()),
                             "kappa": cohen_kappa(both[a], both[b]),
                             "agreement_no_ties": float((decided[a] == decided[b]).mean()) if len(decided) else np.nan})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def disagreements(merged: pd.DataFrame, pairs: Sequence[Mapping[str, Any]], raters: Sequence[str],
                  n: int = 5) -> pd.DataFrame:
    """Up to ``n`` pairs the ``raters`` (columns of ``merged``) labelled differently, with the prompt, both
    answers, their word counts and each rater's choice (0 / 1: the answer's index in the pair, not the side shown)."""
    by_id = {p["pair_id"]: p for p in pairs}
    both = merged[list(raters)].dropna()
    differ = both[both.astype(str).nunique(axis=1) > 1].head(n)
    return pd.DataFrame([{"pair_id": i, "prompt": by_id[i]["prompt"], "answer 0": by_id[i]["answers"][0],
                          "answer 1": by_id[i]["answers"][1], "words 0": len(by_id[i]["answers"][0].split()),
                          "words 1": len(by_id[i]["answers"][1].split()), **row.to_dict()}
                         for i, row in differ.iterrows()])


def flip_chance(annotator: SimulatedAnnotator) -> float:
    """The most often the annotator prefers the worse answer of a pair it does not call a tie: at a utility
    difference of exactly ``tie_margin``, ``sigmoid(-tie_margin / noise)`` (0.5 without a tie margin)."""
    return float(1.0 / (1.0 + np.exp(annotator.tie_margin / annotator.noise)))


def prefers_longer(score: Callable[[list[str], list[str]], Any], pairs: Sequence[Mapping[str, Any]]) -> float:
    """The share of ``pairs`` (those with answers of different word counts) in which ``score`` ranks the longer
    answer higher."""
    differ = [p for p in pairs if len(p["answers"][0].split()) != len(p["answers"][1].split())]
    s0, s1 = score_answers(score, differ)
    longer_first = np.array([len(p["answers"][0].split()) > len(p["answers"][1].split()) for p in differ])
    return float(np.mean((s0 > s1) == longer_first))


# ====================================================================================== labels -> reward
def label_pairs_dataset(pairs: Sequence[Mapping[str, Any]], labels: pd.DataFrame, annotator: str) -> Any:
    """The annotator's preferences as ``datasets.Dataset`` of prompt / chosen / rejected (ties and skips out)."""
    from datasets import Dataset

    by_id = {p["pair_id"]: p for p in pairs}
    mine = labels[(labels.annotator == annotator) & labels.choice.isin([0, 1]) & labels.pair_id.isin(by_id)]
    records = [{"prompt": by_id[i]["prompt"], "chosen": by_id[i]["answers"][c], "rejected": by_id[i]["answers"][1 - c]}
               for i, c in zip(mine.pair_id, mine.choice, strict=True)]
    if not records:
        raise ValueError(f"{annotator!r} has no preference (A or B) among these pairs: nothing to train on")
    return Dataset.from_list(records)


def with_course_pairs(profile: Profile, labelled: Any) -> Any:
    """``labelled`` (a :func:`label_pairs_dataset`) and ``profile.feedback.course_pairs`` of notebook 01's training
    preference pairs (shuffled with the feedback seed), as one ``Dataset`` of prompt / chosen / rejected."""
    from datasets import concatenate_datasets

    from . import data_prep
    from .core import loading

    cfg = profile.feedback
    course = data_prep.load_prepared(profile).preferences["train"].shuffle(seed=cfg.seed)
    course = course.select(range(min(cfg.course_pairs, len(course)))).select_columns(["prompt", "chosen", "rejected"])
    with loading.quiet_datasets():  # no progress bar for a cast of 100 rows
        course = course.cast(labelled.features)
    return concatenate_datasets([labelled, course])  # the trainer shuffles them


def train_on_labels(profile: Profile, train: Any, progress: bool = True) -> Any:
    """Notebook 04's reward model (it knows the course's rubric) trained further on ``train`` (e.g.
    :func:`with_course_pairs`) with ``profile.feedback``'s steps, rate and batch; a :class:`reward.RewardRun`."""
    from . import reward

    cfg = profile.feedback
    start = reward.load_reward_source(profile, normalize=False)
    rcfg = dataclasses.replace(profile.reward, max_steps=cfg.reward_steps, learning_rate=cfg.reward_learning_rate,
                               per_device_train_batch_size=cfg.reward_batch_size, relevance_steps=0,
                               use_margin=False, logging_steps=max(1, cfg.reward_steps // 4))
    return reward.train_reward_model(start.model.train(), start.tokenizer, train, rcfg, progress=progress)


def reward_agreement(score: Callable[[list[str], list[str]], Any], pairs: Sequence[Mapping[str, Any]],
                     labels: pd.DataFrame, annotator: str) -> dict[str, float]:
    """How often a reward (``score(prompts, answers) -> [N]``) orders the annotator's labelled pairs as the
    annotator did (preferences only): ``{"pairs": n, "agreement": share}``."""
    by_id = {p["pair_id"]: p for p in pairs}
    mine = labels[(labels.annotator == annotator) & labels.choice.isin([0, 1]) & labels.pair_id.isin(by_id)]
    chosen = [by_id[i] for i in mine.pair_id]
    s0, s1 = score_answers(score, chosen)
    predicted = np.where(s0 > s1, 0, 1)
    return {"pairs": len(chosen), "agreement": float(np.mean(predicted == mine.choice.to_numpy(dtype=int)))}


def judge_agreement(score: Callable[[list[str], list[str]], Any], pairs: Sequence[Mapping[str, Any]],
                    scores: judge.Scores = judge.gold_scores) -> dict[str, float]:
    """:func:`reward_agreement` against a judge (:func:`judge_choices`) instead of an annotator: how often
    ``score`` orders the pairs as the judge does, on the pairs the judge does not score equal."""
    choices = judge_choices(pairs, scores, "judge")
    labels = pd.DataFrame({"annotator": "judge", "pair_id": choices.index, "choice": choices.to_numpy()})
    return reward_agreement(score, pairs, labels, "judge")


def answer_pairs(prompts: Sequence[str], first: Sequence[str], second: Sequence[str], model: str = "",
                 prefix: str = "q") -> list[dict[str, Any]]:
    """Two policies' answers to the same prompts as pairs (``answers = [first[i], second[i]]``, ids ``q00000``...
    by prompt index), so an annotator, a judge or a reward model can order them; a prompt both answered with the
    same text is left out (nothing to choose between)."""
    if not len(prompts) == len(first) == len(second):
        raise ValueError(f"answer_pairs: {len(prompts)} prompts, {len(first)} and {len(second)} answers")
    return [{"pair_id": f"{prefix}{i:05d}", "prompt": p, "answers": [a, b], "model": model, "sampling": None}
            for i, (p, a, b) in enumerate(zip(prompts, first, second, strict=True)) if a != b]


def duel_table(score: Callable[[list[str], list[str]], Any], prompts: Sequence[str],
               answers: Mapping[str, Sequence[str]], reference: str, annotator: SimulatedAnnotator,
               paths: Paths) -> pd.DataFrame:
    """Whose taste does a policy serve? Each policy of ``answers`` (label -> one answer per prompt) but
    ``reference`` has its answers paired with the reference's (:func:`answer_pairs`: answer 0 the reference's,
    answer 1 the policy's); ``annotator`` labels every pair into a fresh file under ``paths``
    (:func:`simulate_labels`) and ``score`` orders them. One row per policy: the pairs the annotator decided (no
    tie), the share of them where it prefers the policy's answer, the share where ``score`` does, and how often
    ``score`` orders them as the annotator did (:func:`reward_agreement`)."""
    others = [name for name in answers if name != reference]
    duels = {name: answer_pairs(prompts, answers[reference], answers[name], f"{reference} vs {name}", prefix=f"q{i}_")
             for i, name in enumerate(others)}
    every = [p for duel in duels.values() for p in duel]
    labels = read_labels([simulate_labels(annotator, every, paths)], every)
    rows = {}
    for name, duel in duels.items():
        mine = labels[labels.choice.isin([0, 1]) & labels.pair_id.isin({p["pair_id"] for p in duel})]
        decided = [p for p in duel if p["pair_id"] in set(mine.pair_id)]
        row = {"pairs decided": len(decided), "annotator prefers the policy": np.nan, "score prefers the policy": np.nan,
               "score agrees with the annotator": np.nan}
        if decided:
            s0, s1 = score_answers(score, decided)
            row |= {"annotator prefers the policy": float((mine.choice == 1).mean()),
                    "score prefers the policy": float(np.mean(s1 > s0)),
                    "score agrees with the annotator": reward_agreement(score, duel, labels, annotator.name)["agreement"]}
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("policy")


# ========================================================================================= did it work?
def paired_interval(diff: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of per-prompt differences ``diff`` ``[N]``."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))


def compare_answers(prompts: Sequence[str], answers: Mapping[str, Sequence[str]], annotator: SimulatedAnnotator,
                    reference: str, scores: judge.Scores = judge.gold_scores, seed: int = 0) -> pd.DataFrame:
    """Per policy (``answers``: label -> one answer per prompt): mean words, gold score and the annotator's
    utility; for the others, their mean difference from ``reference`` with a paired 95% bootstrap interval."""
    prompts = list(prompts)
    measured = {}
    for label, texts in answers.items():
        measured[label] = {"words": np.array([len(t.split()) for t in texts], dtype=float),
                           "gold": np.asarray(scores(prompts, list(texts)), dtype=float),
                           "utility": np.array([annotator.utility(p, t) for p, t in zip(prompts, texts, strict=True)])}
    rows = []
    for label, m in measured.items():
        row: dict[str, Any] = {"policy": label, "prompts": len(prompts)}
        for key, values in m.items():
            row[key] = float(values.mean())
            if label != reference:
                diff = values - measured[reference][key]
                low, high = paired_interval(diff, seed=seed)
                row |= {f"{key}_diff": float(diff.mean()), f"{key}_diff_low": low, f"{key}_diff_high": high}
        rows.append(row)
    return pd.DataFrame(rows).set_index("policy")


def plot_differences(table: pd.DataFrame, keys: Sequence[str] = ("words", "gold", "utility"),
                     title: str = "") -> Any:
    """One panel per measure of ``keys`` (a :func:`compare_answers` table): each policy's mean difference from the
    reference policy, with its paired 95% interval; the dashed line is no change. Returns the figure."""
    import matplotlib.pyplot as plt

    others = table.dropna(subset=[f"{keys[0]}_diff"])
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 0.5 * len(others) + 1.6), squeeze=False)
    y = np.arange(len(others))
    for ax, key in zip(axes[0], keys, strict=True):
        mid = others[f"{key}_diff"].to_numpy()
        err = np.stack([mid - others[f"{key}_diff_low"].to_numpy(), others[f"{key}_diff_high"].to_numpy() - mid])
        ax.errorbar(mid, y, xerr=err, fmt="o", capsize=4)
        ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(y, others.index if ax is axes[0][0] else [""] * len(y))
        ax.set_ylim(len(others) - 0.4, -0.6)  # the table's order, top to bottom
        ax.set_title(f"{key}: difference from {table.index[0]}", fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def rollout_sampling(profile: Profile, ppo_cfg: Any) -> Any:
    """The decoding of the pairs: PPO's rollouts (its temperature and response length), seeded by the feedback
    config."""
    return dataclasses.replace(profile.generation, do_sample=True, temperature=ppo_cfg.temperature,
                               max_new_tokens=ppo_cfg.response_length, seed=profile.feedback.seed)


def seen_prompts(profile: Profile) -> list[str]:
    """The held-out prompts of the slice ``profile.beyond.eval_split`` (course data: the 160 seen-task prompts, the
    headline of notebooks 05-07); every held-out prompt when the data has no such slice."""
    from . import data_prep

    held = data_prep.heldout(profile)
    return [held.prompts[i] for i in held.indices(profile.beyond.eval_split)]


def heldout_answers(profile: Profile, policies: Mapping[str, Any], tokenizer: Any,
                    progress: bool = True) -> dict[str, list[str]]:
    """Each policy's greedy answers (the evaluation's decoding, ``profile.eval``) to :func:`seen_prompts`."""
    from .core import compare, generation

    prompts, gen_cfg = seen_prompts(profile), compare.generation_config(profile.eval, profile.generation)
    return {label: generation.generate(model, tokenizer, prompts, gen_cfg, desc=label, progress=progress)
            for label, model in policies.items()}


def side_by_side(prompts: Sequence[str], answers: Mapping[str, Sequence[str]], n: int = 4) -> pd.DataFrame:
    """The first ``n`` prompts (not picked) with each policy's answer and its word count."""
    rows = []
    for i, prompt in enumerate(list(prompts)[:n]):
        row = {"prompt": prompt}
        for label, texts in answers.items():
            row |= {label: texts[i], f"words ({label})": len(texts[i].split())}
        rows.append(row)
    return pd.DataFrame(rows)


def save_results(table: pd.DataFrame, agree: pd.DataFrame, agreement: Mapping[str, Mapping[str, float]],
                 annotator: SimulatedAnnotator, paths: Paths) -> list[Path]:
    """Written atomically: ``results/feedback.csv`` (the policies), ``feedback_agreement.csv`` (the raters),
    ``feedback_reward.csv`` (the reward models' held-out agreement, keys ``"notebook 04"`` and ``"trained on the
    labels"``) and ``feedback.md`` (the tables and :func:`reading`, which ``make course`` puts into the README)."""
    from .core.artifacts import write_csv, write_text
    from .evaluation import markdown_table

    rewards = pd.DataFrame(agreement).T.rename_axis("reward model")
    raters = agree.set_index(agree.rater_1 + " / " + agree.rater_2).rename_axis("raters")[AGREEMENT_COLUMNS[2:]]
    text = ["# Human feedback: a reward model and PPO from a simulated annotator's labels (notebook 08)", "",
            "_Generated by `notebooks/08_human_feedback.ipynb` (`rlhf_helpers.human_feedback.save_results`)._ "
            f"The annotator `{annotator.name}`: utility = gold score - {annotator.per_word:g} x words, ties within "
            f"{annotator.tie_margin:g}, Bradley-Terry noise {annotator.noise:g}. Raters' agreement on the pairs both "
            "labelled: the share each called a tie, the agreement (ties included), Cohen's kappa, and the agreement "
            "where neither called a tie:", "", markdown_table(raters),
            "", "Held-out words, gold score and the annotator's utility (differences from SFT with paired 95% "
            "bootstrap intervals):", "", markdown_table(table), "",
            reading(table, agreement["trained on the labels"], agreement["notebook 04"]), "",
            "![words per answer, SFT and PPO on the labels](../plots/feedback_lengths.png)", ""]
    return [write_csv(table, paths.result("feedback.csv")),
            write_csv(agree, paths.result("feedback_agreement.csv"), index=False),
            write_csv(rewards, paths.result("feedback_reward.csv")),
            write_text(paths.result("feedback.md"), "\n".join(text))]


def reading(table: pd.DataFrame, after: Mapping[str, float], before: Mapping[str, float]) -> str:
    """This run's result in sentences, generated from ``table`` (:func:`compare_answers`) and the reward models'
    held-out agreement (:func:`reward_agreement`) after and before training on the labels."""
    lines = [f"Reward model on {after['pairs']} held-out labels: agrees with the annotator on {after['agreement']:.1%} "
             f"(notebook 04's, before training on the labels: {before['agreement']:.1%})."]
    return "\n".join(lines + differences(table, table.index[1]))


def differences(table: pd.DataFrame, label: str) -> list[str]:
    """One sentence per measure (words, gold score, the annotator's utility): policy ``label`` of ``table``
    (:func:`compare_answers`) against the reference (its first row), with the paired interval and its verdict."""
    ref, r, p = table.index[0], table.iloc[0], table.loc[label]
    lines = []
    for key, unit in (("words", "words"), ("gold", "gold score"), ("utility", "annotator's utility")):
        low, high = p[f"{key}_diff_low"], p[f"{key}_diff_high"]
        verdict = "higher" if low > 0 else "lower" if high < 0 else "no clear change"
        lines.append(f"{label}: {unit} {p[key]:.3f} vs {ref} {r[key]:.3f} (difference {p[f'{key}_diff']:+.3f}, "
                     f"95% interval [{low:+.3f}, {high:+.3f}]: {verdict}).")
    return lines
