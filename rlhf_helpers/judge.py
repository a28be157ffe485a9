"""The gold judge: the rubric that produced the course's preferences, as a scoring function.

In real RLHF, "gold" preferences come from people. In this course they come from a small, readable
rubric, so we can measure *true* quality at every stage: the reward model only ever sees the
preference pairs, while this judge knows the rule behind them. It needs no model at all.

Five criteria, each a number in [0, 1]:

* ``on_topic``       - the answer talks about the prompt's topic (inferred from keyword lexicons),
                       not about another one: the share of its topic words that belong to the
                       prompt's topic, times how many there are (3 or more = full marks).
* ``helpful``        - it uses relevant words (distinct words of the topic, words of the prompt
                       such as "rice") and numbers: 4 of them = full marks; a refusal ("I can't
                       help with that") keeps 10% of that, each vague phrase ("it depends") -40%.
* ``polite``         - warmth: 0.25 for a curt answer, +0.375 per friendly phrase (an opener like "Happy
                       to help!", a closer like "Good luck!"; two count), -0.25 for each one beyond two
                       (gushing flattery), -0.5 for each rude phrase ("Ugh", "stop wasting my time").
* ``concise``        - about 12-50 words is ideal; shorter or longer decays smoothly; filler
                       phrases ("basically", "to be honest") cost a little each.
* ``non_repetitive`` - the share of distinct word trigrams (a repeated sentence lowers it), squared,
                       times a penalty when under 70% of the content words are distinct
                       ("rice rice cook rice pot rice" has no repeated trigram, but is not an answer).

They combine as::

    content = (on_topic + helpful) / 2                       # does it answer the question?
    style   = 0.50 * polite + 0.25 * concise + 0.25 * non_repetitive
    total   = content * (0.3 + 0.7 * style)

The product means nothing makes up for missing content: an empty, off-topic, gibberish, or refusing
reply scores (close to) 0 however polite it is, while style moves a good answer between 0.3x and 1x.
Every piece is continuous, so small improvements (one more topic word, one repeat fewer, a length
closer to the target) raise the score a little - which is what a PPO curve needs to show progress.

The judge is written for the course's ten topics. For a prompt with no topic words (e.g. from
another dataset) ``on_topic`` and ``helpful`` fall back to the words the answer shares with the
prompt, which is a much weaker signal. It accepts any string (empty, gibberish, very long: only the
first ``MAX_CHARS`` characters are read) and is deterministic.

Public API: :func:`gold_score`, :func:`gold_scores`, :func:`gold_breakdown`, :func:`infer_topic`,
:func:`topic_counts`, :func:`marker_counts`, plus the constants the data generator shares
(:data:`TOPICS`, :data:`TOPIC_LEXICONS`, the ``*_PATTERNS`` marker lists). As reward sources (``score(prompts,
responses) -> tensor [B]``, what PPO's metrics, the reward model's analysis and the evaluation call):
:class:`GoldJudge` (this rubric), :class:`HubJudge` (a reward model from the Hub, on other data) and
:func:`load_judge` (the profile's choice between them).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .core.hub import resolve
from .core.loading import loading_from, precision

if TYPE_CHECKING:
    import torch

    from .core.config import Profile

# --------------------------------------------------------------------------------------------
# Topic lexicons. Base forms; plurals and possessives ("eggs", "dog's") are matched automatically.
# The lists are disjoint (a test checks it), and ambiguous words that several topics use
# ("water", "heat", "light", "bed", "time", "clean"...) are deliberately left out.
# --------------------------------------------------------------------------------------------
TOPIC_LEXICONS: dict[str, frozenset[str]] = {
    "cooking": frozenset("""
        bake baked baking batter blade bland boil boiled boiling bread broth butter chef chewy chill
        cook cooked cookie cooking crispy crushed crust dish dough egg filling flavor flavorful flour
        fluff fluffy fork fragrant fried fry frying garlic griddle honing ingredient juice juicy kitchen
        knead knife lemon loaf meat oil olive omelette onion oven pan pasta pepper pinch plate pot
        recipe rice roast roasted roasting salt salted sauce saute sauteing sear seared season seasoned
        seasoning sharpen simmer simmering skillet slicing soup spice starch steak stir stove sugar
        taste tasting tender thicken toss vegetable vinegar whetstone whisk wok yeast yolk
    """.split()),
    "gardening": frozenset("""
        aphid balcony bloom bud bulb bush cactus cane clay clover compost container dig digging drainage
        fertilize fertilizer flower garden gardener gardening germinate grass greenhouse grow growing
        harvest hedge hoe hose houseplant ladybug lawn leaf lettuce misting moist mow mowing mulch
        overseed perennial pest plant planted planting potting prune pruner pruning repot root rose rot
        scrap seed seedling shovel shrub soggy soil sow sprout sprouting stake stem succulent trowel
        watering weed weeding
    """.split()),
    "travel": frozenset("""
        abroad airline airport aisle backpack bag boarding booking bus cancellation carry city clothes
        country currency customs destination domestic europe fare flight foreign greeting guesthouse
        holiday hostel hotel international itinerary jet journey lag layover liquid luggage map metro
        museum outfit overseas pack packing passport phrase plane road route seat security sights
        sightseeing souvenir suitcase ticket tour tourist transit translation travel traveler traveling
        trip vacation valuables visa
    """.split()),
    "fitness": frozenset("""
        5k athletic barbell cardio chest core cycling deadlift dumbbell endurance equipment exercise
        exercising fitness flexibility glute gym hamstring heart heel hip injury interval jog jogging
        knee leg lift lifting lunge marathon muscle pace pain plank protein pushup race recovery rep
        runner running shoulder sore sprint squat stamina strength stretch stretching stronger thighs
        treadmill warmup weight workout yoga
    """.split()),
    "finance": frozenset("""
        account afford autopay bank bill bond broker budget budgeting card cash charge compound
        contribution cost credit debt deposit discount dividend dollar emergency employer expense fee
        finance financial fund grocery impulse income index inflation insurance interest invest
        investing investment lender loan market minimum money mortgage paid pay paycheck payday payment
        pension portfolio principal purchase refinancing refund rent retirement returns roommate salary
        sale save saving score shop shopping spend spending stock subscription tax transfer utilities
        yield
    """.split()),
    "pets": frozenset("""
        adopt adoption aquarium bark barking bedding bowl breed cat chew claw collar comb conditioner
        crate cue den dental diet dog enzyme feeding fetch fish flea fur furniture goldfish groom
        groomer grooming hamster harness kibble kitten leash litter mat nutrition obedience overheating
        panting parrot paw pet potty praise puppy rabbit rescue scent scratching shelter sit tail tooth
        toothpaste treat vet veterinarian
    """.split()),
    "programming": frozenset("""
        algorithm api branch bug code coder coding commit compile compiler css database debug debugger
        debugging developer dictionary documentation editor error exception factorial feature file
        framework function git global html init input javascript joins library logging login lookups
        loop merge message module naming object print profiler program programmer programming pytest
        python query recursion recursive refactor remote repo repository script select server software
        sql sqlite stack statement string syntax table terminal test testing trace traceback tutorial
        value variable version
    """.split()),
    "home_repair": frozenset("""
        anchor bathroom breaker cabinet cartridge caulk caulking ceiling chain circuit clog clogged coat
        crack door downspout draft drafty drain drill drip drywall electrician faucet flapper float
        floor floorboard frame furnace fuse gap grout gutter hammer hardware hinge insulation joist
        ladder leak leaky lubricant mesh nail outlet overflow paint painter painting panel patch pin
        pipe pliers plumber plumbing plunger power primer putty regrout repair reset roof sand sanding
        sandpaper sash saw screw screwdriver seal shelf shingle shutoff sink spackle squeak squeaky
        stain stopper stud tank thermostat tighten tile toilet toolbox tube unclog valve warped washer
        weatherstripping wiring wrench
    """.split()),
    "sleep": frozenset("""
        alarm apnea asleep awake bedroom bedtime blackout blanket breathing caffeine circadian coffee
        decaf dim doze dream drowsy earplugs groggy insomnia lamp mask mattress melatonin nap napping
        nightmare nighttime pillow relax relaxation relaxing rested restful routine screen shift sleep
        sleeper sleeping sleepy slept snore snoring tired wake waking winding yawn
    """.split()),
    "photography": frozenset("""
        aperture autofocus background blur blurry bokeh burst camera composition contrast crop cropping
        dslr edit editing expose exposure flash flattering focus foreground grainy grid histogram
        horizon iso jpeg landscape lens lenses lightroom mirrorless motion photo photograph photographer
        photography picture pixel portrait raw reflector saturation scene selfie sensor shadow sharper
        shoot shooting shot shutter sky snapshot speed star subject sunrise sunset telephoto tripod
        viewfinder zoom
    """.split()),
}
TOPICS: tuple[str, ...] = tuple(TOPIC_LEXICONS)

# --------------------------------------------------------------------------------------------
# Phrase markers: regular expressions searched in the lower-cased text. Each must match at the
# start of a word (checked in _hits), so "enjoy" does not fire inside "overjoyed".
# --------------------------------------------------------------------------------------------
POLITE_PATTERNS: tuple[str, ...] = (
    r"happy to help\b", r"great question\b", r"good question\b", r"sure[!,.]",
    r"sure thing\b", r"of course\b", r"glad you asked\b", r"thanks for asking\b",
    r"thank you\b", r"hope (this|that) helps\b", r"good luck\b", r"enjoy\b", r"have fun\b",
    r"please\b", r"happy coding\b", r"safe travels\b", r"sleep well\b",
)
RUDE_PATTERNS: tuple[str, ...] = (
    r"ugh\b", r"obvious(ly)?\b", r"everyone knows\b", r"silly question\b", r"dumb\b",
    r"stupid\b", r"idiot", r"whatever\b", r"how do you not know\b", r"did you even\b",
    r"wast(e|ing) (of )?my time\b", r"figure (it|this|the rest) out yourself\b",
    r"figure out the rest yourself\b", r"not that hard\b", r"keep up\b", r"don'?t ask me\b",
    r"so basic\b", r"seriously\?", r"lazy\b", r"pathetic\b", r"ridiculous\b", r"clueless\b",
)
REFUSAL_PATTERNS: tuple[str, ...] = (
    r"i can'?t help\b", r"i cannot help\b", r"can(no|')?t assist\b", r"i'?m not able to\b",
    r"i am not able to\b", r"i'?d rather not\b", r"i won'?t\b", r"i will not\b",
    r"not something i can\b", r"i'?m unable\b", r"unable to help\b", r"i must decline\b",
    r"as an ai\b", r"i can'?t answer\b", r"i cannot answer\b",
)
VAGUE_PATTERNS: tuple[str, ...] = (
    r"it (really |all )?depends\b", r"hard to say\b", r"everyone is different\b", r"many ways\b",
    r"just try\b", r"see what works\b", r"do some research\b", r"look it up\b", r"up to you\b",
    r"who knows\b", r"it varies\b", r"lots? of things\b", r"not sure\b", r"something like that\b",
)
FILLER_PATTERNS: tuple[str, ...] = (
    r"basically\b", r"you know\b", r"to be honest\b", r"at the end of the day\b", r"as i said\b",
    r"like i said\b", r"kind of\b", r"sort of\b", r"i mean\b", r"needless to say\b",
    r"all things considered\b", r"for what it'?s worth\b", r"when you (really )?think about it\b",
    r"anyway\b", r"if you ask me\b",
)

_POLITE = [re.compile(p) for p in POLITE_PATTERNS]
_RUDE = [re.compile(p) for p in RUDE_PATTERNS]
_REFUSAL = [re.compile(p) for p in REFUSAL_PATTERNS]
_VAGUE = [re.compile(p) for p in VAGUE_PATTERNS]
_FILLER = [re.compile(p) for p in FILLER_PATTERNS]

# Words that say nothing about *what* is asked: left out when we look for prompt words in the answer.
STOPWORDS: frozenset[str] = frozenset("""
    a an the and or but if so of to in on at for from with without by about as into onto over under
    up down out off than then too very just also not no yes do does did doing done i me my mine
    myself you your yours we our they them their he she it its this that these those there here is
    are was were be been being am have has had can could should would will shall may might must
    what which who whom whose when where why how any some all each every few more most other such
    own same only get got make makes making want need know keep start best way ways good better tips
    tip give advice help explain question questions new tonight just started trying learning thing
    things well right really like still even much many lot lots around before after again first
    while because until once i'm i've im ive don't can't dont cant human assistant
""".split())

TARGET_WORDS = (12, 50)  # the concise range: full marks between these word counts
# How the criteria combine (the formulas of the module docstring; the datasheet prints them from here).
WEIGHTS: dict[str, Any] = {
    "content": {"on_topic": 0.5, "helpful": 0.5},
    "style": {"polite": 0.50, "concise": 0.25, "non_repetitive": 0.25},
    "total_floor": 0.3,  # total = content * (floor + (1 - floor) * style)
    "polite": {"base": 0.25, "per_friendly": 0.375, "friendly_counted": 2, "per_gushing": 0.25, "per_rude": 0.5},
}
MAX_CHARS = 20_000  # longer text is cut before analysis (it scores ~0 on concise anyway)
CRITERIA: tuple[str, ...] = ("on_topic", "helpful", "polite", "concise", "non_repetitive")

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_IRREGULAR = {"leaves": "leaf", "knives": "knife", "shelves": "shelf", "teeth": "tooth"}
# word -> topic, for every lexicon entry (the lexicons are disjoint, so each word has one topic).
_WORD_TOPIC: dict[str, str] = {w: t for t, lex in TOPIC_LEXICONS.items() for w in lex}


def _tokens(text: str) -> list[str]:
    """Lower-cased word tokens: letters/digits with an optional apostrophe part ("dog's", "don't")."""
    return _WORD.findall(text.lower())


@functools.lru_cache(maxsize=65536)
def _forms(word: str) -> tuple[str, ...]:
    """The word and its plausible singular forms: "dog's"->"dog", "eggs"->"egg", "puppies"->"puppy"."""
    if word.endswith("'s"):
        word = word[:-2]
    if word in _IRREGULAR:
        return (word, _IRREGULAR[word])
    forms = [word]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        if word.endswith("ies"):
            forms.append(word[:-3] + "y")
        if word.endswith(("ches", "shes", "xes", "sses", "oes")):
            forms.append(word[:-2])
        forms.append(word[:-1])
    return tuple(forms)


def _base(word: str) -> str:
    """One canonical form per word ("bushes" -> "bush"), to compare prompt words with answer words."""
    forms = _forms(word)
    return forms[1] if len(forms) > 1 else forms[0]


@functools.lru_cache(maxsize=65536)
def _lexicon_entry(word: str) -> tuple[str, str] | None:
    """(topic, lexicon entry) that this word matches in any of its forms, else None."""
    for form in _forms(word):
        if form in _WORD_TOPIC:
            return _WORD_TOPIC[form], form
    return None


def topic_counts(text: str) -> dict[str, int]:
    """How many words of ``text`` belong to each topic's lexicon."""
    counts = dict.fromkeys(TOPICS, 0)
    for w in _tokens(text[:MAX_CHARS]):
        if (hit := _lexicon_entry(w)) is not None:
            counts[hit[0]] += 1
    return counts


def infer_topic(text: str) -> str | None:
    """The topic whose lexicon ``text`` uses most (ties: the first in :data:`TOPICS`), or None."""
    counts = topic_counts(text)
    best = max(TOPICS, key=lambda t: counts[t])  # max() keeps the first of equal counts
    return best if counts[best] > 0 else None


def _found(pattern: re.Pattern[str], text: str) -> bool:
    """Does ``pattern`` match somewhere in ``text`` at the start of a word?

    (A leading ``\\b`` in the pattern would do the same, but makes Python's regex engine ~15x slower.)
    """
    return any(m.start() == 0 or not text[m.start() - 1].isalnum() for m in pattern.finditer(text))


def _hits(patterns: list[re.Pattern[str]], text: str) -> int:
    """Number of distinct patterns found in ``text``."""
    return sum(1 for p in patterns if _found(p, text))


def marker_counts(text: str) -> dict[str, int]:
    """How many distinct polite / rude / refusal / vague / filler phrases ``text`` contains."""
    text = text[:MAX_CHARS].lower()
    return {"polite": _hits(_POLITE, text), "rude": _hits(_RUDE, text), "refusal": _hits(_REFUSAL, text),
            "vague": _hits(_VAGUE, text), "filler": _hits(_FILLER, text)}


def _content_words(tokens: list[str]) -> set[str]:
    return {_base(w) for w in tokens if len(w) > 2 and w not in STOPWORDS}


def _length_score(n_words: int) -> float:
    """1 inside TARGET_WORDS; (n/lo)^1.5 below it; exp(-(n-hi)/30) above it."""
    lo, hi = TARGET_WORDS
    if n_words <= 0:
        return 0.0
    if n_words < lo:
        return (n_words / lo) ** 1.5
    if n_words <= hi:
        return 1.0
    return math.exp(-(n_words - hi) / 30.0)


def _trigram_ratio(tokens: list[str]) -> float:
    """Distinct word trigrams / all trigrams (1.0 = no repeats). Short texts use unigrams instead."""
    if len(tokens) < 4:
        return len(set(tokens)) / len(tokens)
    grams = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
    return len(set(grams)) / len(grams)


def gold_breakdown(prompt: str, response: str) -> dict[str, float]:
    """Score one response: ``{criterion: value in [0, 1], ..., "total": value in [0, 1]}``."""
    if not isinstance(prompt, str) or not isinstance(response, str):
        raise TypeError(f"gold_breakdown expects two strings, got {type(prompt).__name__} "
                        f"and {type(response).__name__}")
    text = response[:MAX_CHARS].lower()
    tokens = _tokens(text)
    if not tokens:  # empty, whitespace or punctuation only: nothing to judge
        return {c: 0.0 for c in CRITERIA} | {"total": 0.0}

    # What was asked: the prompt's topic, and its content words ("boil", "egg", "peel").
    topic = infer_topic(prompt)
    asked = _content_words(_tokens(prompt[:MAX_CHARS]))
    shared = asked & _content_words(tokens)
    numbers = min(2, sum(w.isdigit() for w in tokens))  # "15 minutes", "350 degrees": concrete detail

    if topic is not None:
        # on_topic: the share of topic words that belong to the prompt's topic, times how many
        # there are (3 or more = full marks). An answer about another topic gets 0.
        hits = [h for w in tokens if (h := _lexicon_entry(w)) is not None]
        own = sum(1 for t, _ in hits if t == topic)
        on_topic = (own / len(hits) if hits else 0.0) * min(1.0, own / 3)
        # relevant: distinct words of the prompt's topic, plus the prompt's own words, it uses.
        relevant = {f for t, f in hits if t == topic} | shared
    else:  # unknown topic: the best we can do is "does it use the words of the question"
        on_topic = min(1.0, len(shared) / min(2, len(asked))) if asked else 0.0
        relevant = shared

    # helpful: 4 relevant words or numbers = full marks (numbers count only next to relevant words);
    # refusals and vague non-answers are cut down.
    helpful = min(1.0, (len(relevant) + (numbers if relevant else 0)) / 4)
    if _hits(_REFUSAL, text):
        helpful *= 0.1
    helpful *= max(0.2, 1.0 - 0.4 * _hits(_VAGUE, text))

    # polite: warmth. A curt answer (no friendly phrase) 0.25; each friendly phrase +0.375 (two count: an opener
    # and a closer); each one beyond two -0.25 (gushing: "Great question! Happy to help! Sure!" is flattery);
    # each rude phrase -0.5.
    friendly, w = _hits(_POLITE, text), WEIGHTS["polite"]
    polite = (w["base"] + w["per_friendly"] * min(w["friendly_counted"], friendly)
              - w["per_gushing"] * max(0, friendly - w["friendly_counted"]) - w["per_rude"] * _hits(_RUDE, text))

    # concise: length in the target range, minus 15% per filler phrase (at most -70%).
    concise = _length_score(len(tokens)) * max(0.3, 1.0 - 0.15 * _hits(_FILLER, text))

    # non_repetitive: repeated trigrams (loops, repeated sentences) and low word variety (keyword salad).
    words = [_base(w) for w in tokens[:2000] if len(w) > 2 and w not in STOPWORDS]
    variety = len(set(words)) / len(words) if len(words) >= 5 else 1.0
    non_repetitive = _trigram_ratio(tokens[:2000]) ** 2 * min(1.0, variety / 0.7)

    scores = {"on_topic": on_topic, "helpful": helpful, "polite": polite, "concise": concise,
              "non_repetitive": non_repetitive}
    scores = {k: min(1.0, max(0.0, v)) for k, v in scores.items()}
    content = sum(v * scores[k] for k, v in WEIGHTS["content"].items())
    style = sum(v * scores[k] for k, v in WEIGHTS["style"].items())
    floor = WEIGHTS["total_floor"]
    scores["total"] = content * (floor + (1 - floor) * style)
    return scores


def gold_score(prompt: str, response: str) -> float:
    """The judge's total score of one response, in [0, 1] (higher is better)."""
    return gold_breakdown(prompt, response)["total"]


Scores = Callable[[Sequence[str], Sequence[str]], Sequence[float]]  # (prompts, responses) -> one score each, as
# gold_scores and the judges' scores(); what reward.score_pairs / fool_table / scored_records take as judge_scores


def gold_scores(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """Score many (prompt, response) pairs; both sequences must have the same length."""
    if len(prompts) != len(responses):
        raise ValueError(f"gold_scores got {len(prompts)} prompts but {len(responses)} responses")
    return [gold_score(p, r) for p, r in zip(prompts, responses, strict=True)]


# ------------------------------------------------------------------------------------ as reward sources
class GoldJudge:
    """This module's rubric (:func:`gold_scores`) behind the reward-source interface."""

    name = "gold judge"

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """Scores in [0, 1], float32 tensor ``[B]``."""
        import torch

        return torch.tensor(gold_scores(list(prompts), list(responses)), dtype=torch.float32)

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """:func:`gold_scores`: one float per (prompt, response)."""
        return gold_scores(prompts, responses)


class HubJudge:
    """A reward model from the Hub as the judge, e.g. ``OpenAssistant/reward-model-deberta-v3-large-v2``.

    Any ``AutoModelForSequenceClassification`` with one output that reads a (question, answer) pair: the
    prompt and the response go in as a text pair (the OpenAssistant reward models' input), truncated to
    ``max_length`` tokens; the score is the logit. Loaded on first use (needs the Hub, i.e. the colab profile).
    """

    def __init__(self, model_name: str, batch_size: int = 16, max_length: int = 512, device: str | None = None):
        self.name = model_name
        self.batch_size, self.max_length, self.device = batch_size, max_length, device
        self._model = self._tokenizer = None

    def _load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = self.device or precision().device
        source = resolve(self.name)
        with loading_from(source):
            self._tokenizer = AutoTokenizer.from_pretrained(source)
            self._model = AutoModelForSequenceClassification.from_pretrained(source).to(self.device).eval()

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """The judge's logits, float32 tensor ``[B]`` on CPU."""
        import torch

        if self._model is None:
            self._load()
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), self.batch_size):
                enc = self._tokenizer(list(prompts[i : i + self.batch_size]), list(responses[i : i + self.batch_size]),
                                      truncation=True, max_length=self.max_length, padding=True,
                                      return_tensors="pt").to(self.device)
                out.append(self._model(**enc).logits[:, 0].float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """:meth:`score` as one float per (prompt, response)."""
        return self.score(list(prompts), list(responses)).tolist()


def load_judge(profile: Profile) -> GoldJudge | HubJudge:
    """The judge of ``profile.eval.judge``: ``"gold"`` -> :class:`GoldJudge`; a model name -> :class:`HubJudge`;
    ``"auto"`` -> the gold judge on the course data, else ``profile.eval.hub_judge`` (the rubric knows only the
    course's ten topics: on other data it would grade keywords, not answers). Its ``name`` goes into the titles;
    ``scores(prompts, responses) -> list[float]`` is what the reward-model checks and PPO's ``objective/gold`` use."""
    choice = profile.eval.judge
    if choice == "auto":
        choice = "gold" if profile.data.source == "course" else profile.eval.hub_judge
    return GoldJudge() if choice == "gold" else HubJudge(choice, batch_size=profile.eval.batch_size)
