"""The matcher: from a message to a label, with an honest "I don't know".

Three signals decide. A TF-IDF vector of character n-grams and word stems finds the knowledge
phrasings nearest to the message (an inverted index, so 20,000 phrasings stay fast); rapidfuzz
re-scores those candidates on the strings themselves (typos, word order, extra words); and the
coverage says how much of the message the knowledge's vocabulary explains at all, so a question
about loans or crypto is not answered with the nearest FAQ entry. Below the calibrated cut-offs,
or when the two best labels are too close, the label is `out_of_scope`.

Over 400 lines: one pipeline (index, candidates, scores, decision) over the same flat arrays;
splitting its stages would pass those arrays between modules on the hot path.
"""

from __future__ import annotations

import copy
import math
import re
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
from rapidfuzz import fuzz, process

from bot.faq.knowledge import Knowledge
from bot.nlu.clauses import Clause
from bot.nlu.entities import PLACEHOLDERS, extract_entities, replace_entities
from bot.nlu.features import stem, tokens, units
from bot.nlu.fillers import FILLER_CHARS as _FILLER_CHARS
from bot.nlu.fillers import FILLER_WORDS as _FILLER_WORDS
from bot.nlu.language import detect_language
from bot.nlu.normalize import SynonymTable, fold, has_cjk, strip_punctuation
from bot.nlu.requests import marker_key
from bot.nlu.sounds import PinyinWords, sound
from bot.nlu.values import read_amount
from bot.types import CHITCHAT_LABELS, CLOSING_LABELS, Alternative, Label, Language, Parse

# The fillers as the matcher's tokens hold them: Snowball stems ("please" -> "pleas").
_FILLER_STEMS = frozenset(stem(word) for word in _FILLER_WORDS)
_PLACEHOLDER_WORDS = {stem(word.strip()) for word in PLACEHOLDERS.values()}
# Coverage of a message with no meaning-bearing words ("就是那个", "对的"): such a message gets a
# label only when it matches a phrasing almost exactly (see `min_score_contentless`).
_CONTENTLESS = -1.0


def _token_weight(token: str) -> float:
    """Single characters say less than bigrams; filler words say almost nothing."""
    if token.startswith("c:"):
        return 0.5
    if token.startswith("w:") and token[2:] in _FILLER_STEMS:
        return 0.25
    return 1.0


@dataclass(frozen=True, slots=True)
class MatcherConfig:
    """Cut-offs and weights; calibrated on tests/data/nlu_dev.jsonl (see benchmarks/README.md)."""

    min_score: float = 0.1
    min_margin: float = 0.005
    min_coverage: float = 0.45
    max_foreign: float = 0.2
    min_score_contentless: float = 0.5
    # The same cut-offs for a message without Chinese characters (English words only).
    min_score_latin: float = 0.3
    min_coverage_latin: float = 0.55
    latin_short_words: int = 8
    candidates: int = 60
    weight_nearest: float = 0.2
    weight_top3: float = 0.2
    weight_centroid: float = 0.4
    weight_fuzz: float = 0.2
    out_of_scope_scale: float = 0.9
    # An out-of-scope example refuses only when it beats every in-scope label by this much.
    oos_margin: float = 0.0
    # Foreign words refuse only when the out-of-scope examples score within this of the best.
    foreign_margin: float = 0.05
    # A message the in-scope vocabulary explains this well is not refused by out-of-scope
    # examples whose foreign words it does not share (see `Matcher.scores`).
    ungrounded_coverage: float = 0.8
    # ... unless they match it by this much more than any in-scope phrasing ("how can I get more
    # customers into my shop": every word known, and a question about running the shop), in a
    # message long enough to say what it is about ("怎么处理" is a frame only).
    ungrounded_margin: float = 0.15
    ungrounded_min_chars: int = 8
    # Messages this long (characters, spaces aside) are also judged clause by clause.
    clause_min_chars: int = 16
    # A clause rescues a refused message only with at least this score.
    clause_min_score: float = 0.2
    # A clause that greets or thanks this clearly stands for a long message that asks nothing.
    pleasantry_score: float = 0.5
    # Out-of-scope examples leading a long message by less than this let a clause rescue it,
    # when the clause is answered with at least `oos_rescue_score`.
    oos_rescue_lead: float = 0.05
    oos_rescue_score: float = 0.45


@dataclass(frozen=True, slots=True)
class _Entry:
    label: Label
    body: str
    compact: str


def _normalise(vector: dict[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
    return {k: v / norm for k, v in vector.items()}


class Matcher:
    """Built once from the knowledge at start-up; `parse` is pure and cheap."""

    def __init__(self, knowledge: Knowledge, config: MatcherConfig | None = None) -> None:
        self.config = config or MatcherConfig()
        self._synonyms = SynonymTable(knowledge.synonyms)
        in_scope_texts = [
            fold(p.text) for p in knowledge.phrasings if p.label != Label.OUT_OF_SCOPE
        ]
        self._pinyin = PinyinWords(in_scope_texts)
        self._english = {stem(w) for t in in_scope_texts for w in _LATIN.findall(t)}
        self._mood = _mood_pattern(knowledge)
        self._entries: list[_Entry] = []
        bags = []
        for phrasing in knowledge.phrasings:
            body = self.body(fold(phrasing.text))
            if not body:
                continue
            self._entries.append(_Entry(phrasing.label, body, body.replace(" ", "")))
            bags.append(tokens(body))
        documents = len(bags) or 1
        frequency: dict[str, int] = defaultdict(int)
        for bag in bags:
            for token in bag:
                frequency[token] += 1
        self._idf = {t: math.log((documents + 1) / (n + 0.5)) for t, n in frequency.items()}
        self._max_idf = math.log((documents + 1) / 0.5)
        postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        centroids: dict[Label, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for i, bag in enumerate(bags):
            for token, weight in self._vector(bag).items():
                postings[token].append((i, weight))
                centroids[self._entries[i].label][token] += weight
        # The inverted index as two flat arrays, each token's postings one slice of them: a
        # query's cosines are then summed by numpy, not posting by posting in Python.
        self._spans: dict[str, tuple[int, int]] = {}
        documents_of: list[int] = []
        weights_of: list[float] = []
        for token, entries in postings.items():
            start = len(documents_of)
            documents_of.extend(i for i, _ in entries)
            weights_of.extend(w for _, w in entries)
            self._spans[token] = (start, len(documents_of))
        self._posting_documents = np.array(documents_of, dtype=np.intp)
        self._posting_weights = np.array(weights_of, dtype=np.float64)
        self._centroids = {label: _normalise(dict(v)) for label, v in centroids.items()}
        self._labels = sorted(self._centroids)
        # Vocabulary of what the bot can answer: out-of-scope examples explain nothing.
        in_scope = [
            bag for bag, e in zip(bags, self._entries, strict=True) if e.label != Label.OUT_OF_SCOPE
        ]
        self._known = {t for bag in in_scope for t in bag}
        # Words only out-of-scope examples use (支付宝, 贷款, crypto): topics not covered.
        self._foreign = {
            t
            for bag, e in zip(bags, self._entries, strict=True)
            if e.label == Label.OUT_OF_SCOPE
            for t in bag
            if t[0] in "bw" and t not in self._known and t[2:] not in _FILLER_STEMS
        }
        self._known_words = sorted(t[2:] for t in self._known if t.startswith("w:"))
        # What makes each out-of-scope example out of scope: its foreign words (美团 in
        # "美团收款的费率是多少", not 率是: a bigram with a filler character names no topic);
        # empty for an in-scope phrasing.
        self._entry_foreign = [
            frozenset(
                t
                for t in bag
                if t in self._foreign and not (t[0] == "b" and _FILLER_CHARS.intersection(t[2:]))
            )
            if e.label == Label.OUT_OF_SCOPE
            else frozenset()
            for bag, e in zip(bags, self._entries, strict=True)
        ]
        self._clause_words = knowledge.clauses
        self._requests = knowledge.requests
        # Short Chinese phrasings by sound, for a short message typed by ear ("泥好", "白白");
        # a sound two labels share belongs to neither.
        sounds: dict[str, set[Label]] = defaultdict(set)
        for entry in self._entries:
            if (
                entry.label != Label.OUT_OF_SCOPE
                and len(entry.compact) <= _SOUND_MAX_CHARS
                and _ALL_CJK.fullmatch(entry.compact)
            ):
                sounds[sound(entry.compact)].add(entry.label)
        self._sounds = {
            sound: next(iter(labels)) for sound, labels in sounds.items() if len(labels) == 1
        }

    def configured(self, config: MatcherConfig) -> Matcher:
        """This matcher's index under other thresholds: the config is read only when a text
        is parsed, so tuning and tests need not build the index again."""
        twin = copy.copy(self)
        twin.config = config
        return twin

    def body(self, folded: str) -> str:
        """Folded text made comparable: entities as placeholders, no punctuation, typos fixed."""
        return self._comparable(replace_entities(folded, extract_entities(folded)))

    def _vector(self, bag: dict[str, int]) -> dict[str, float]:
        weights = {
            t: (1.0 + math.log(n)) * self._idf.get(t, self._max_idf) * _token_weight(t)
            for t, n in bag.items()
        }
        return _normalise(weights)

    def explain(self, body: str) -> tuple[float, float]:
        """How much of the message the in-scope knowledge explains, and how much is foreign.

        Both are shares of the message's meaning-bearing units (characters and words, weighted by
        rarity): `coverage` those the in-scope vocabulary knows, `foreign` those that only
        out-of-scope examples use.
        """
        total = explained = foreign = 0.0
        for kind, unit, context in units(body):
            if kind == "c":
                if unit in _FILLER_CHARS:
                    continue
                weight = self._idf.get("c:" + unit, self._max_idf)
                left, right = ("b:" + side for side in (context or "|").split("|"))
                if left in self._known or right in self._known:
                    explained += weight
                elif ("c:" + unit) in self._known:
                    explained += 0.3 * weight
                if left in self._foreign or right in self._foreign:
                    foreign += weight
            else:
                if unit in _FILLER_STEMS or unit in _PLACEHOLDER_WORDS or len(unit) == 1:
                    # A lone letter ("100k", "x2") says nothing about the topic.
                    continue
                weight = self._idf.get("w:" + unit, self._max_idf)
                # A word only out-of-scope examples use ("paypal") is foreign as written, not
                # a typo of a known word ("pay").
                if ("w:" + unit) in self._foreign:
                    foreign += weight
                elif ("w:" + unit) in self._known or (
                    len(unit) > 4
                    and process.extractOne(
                        unit, self._known_words, scorer=fuzz.ratio, score_cutoff=85
                    )
                ):
                    explained += weight
            total += weight
        if not total:
            return _CONTENTLESS, 0.0
        return explained / total, foreign / total

    def _candidates(self, query: dict[str, float]) -> list[tuple[int, float]]:
        """The phrasings nearest to the query by cosine, best first (ties in knowledge order).

        Exact at any size: every posting of every query token counts, summed in one numpy
        pass (`bincount`), and only the best are sorted."""
        spans = [(self._spans[t], w) for t, w in query.items() if t in self._spans]
        if not spans:
            return []
        documents = np.concatenate([self._posting_documents[a:b] for (a, b), _ in spans])
        products = np.concatenate([self._posting_weights[a:b] * w for (a, b), w in spans])
        dots = np.bincount(documents, weights=products, minlength=len(self._entries))
        found = np.flatnonzero(dots)
        wanted = self.config.candidates
        if len(found) > wanted:
            # Every phrasing tied with the last one kept stays a candidate until the sort, so
            # a tie (two phrasings alike once variants are replaced) goes by knowledge order.
            cut = dots[found[np.argpartition(dots[found], -wanted)[-wanted]]]
            found = found[dots[found] >= cut]
        found = found[np.lexsort((found, -dots[found]))][:wanted]
        return list(zip(found.tolist(), dots[found].tolist(), strict=True))

    def scores(self, body: str) -> tuple[dict[Label, float], dict[Label, str], bool]:
        """Each candidate label's combined score, the phrasing that matched it best, and
        whether the nearest out-of-scope examples are near for what makes them out of scope.

        An out-of-scope example with foreign words ("美团收款的费率是多少") is near for that
        reason only when the message shares one of them: "费率是多少" shares every other word
        with it and is still a question about our fees. The three nearest examples count,
        and the nearest alone when it has no foreign word ("what's 17 times 23")."""
        query = self._vector(tokens(body))
        top = self._candidates(query)
        nearest_oos = [i for i, _ in top if self._entries[i].label == Label.OUT_OF_SCOPE][:3]
        grounded = bool(nearest_oos) and (
            not self._entry_foreign[nearest_oos[0]]
            or any(not self._entry_foreign[i].isdisjoint(query) for i in nearest_oos)
        )
        cosines: dict[Label, list[float]] = defaultdict(list)
        fuzzy: dict[Label, float] = {}
        best_phrasing: dict[Label, str] = {}
        compact = body.replace(" ", "")
        for i, cosine in top:
            entry = self._entries[i]
            cosines[entry.label].append(cosine)
            similarity = fuzz.ratio(compact, entry.compact) / 100.0
            if similarity > fuzzy.get(entry.label, -1.0):
                fuzzy[entry.label] = similarity
                best_phrasing[entry.label] = entry.body
        config = self.config
        combined: dict[Label, float] = {}
        for label, found in cosines.items():
            nearest = config.weight_nearest * found[0] + config.weight_top3 * sum(found[:3]) / len(
                found[:3]
            )
            if label == Label.OUT_OF_SCOPE:
                # Out-of-scope examples cover many unrelated topics, so their centroid means
                # nothing; the class is as strong as its nearest examples.
                weight = config.weight_nearest + config.weight_top3
                combined[label] = config.out_of_scope_scale * (
                    (nearest / weight) * (1.0 - config.weight_fuzz)
                    + config.weight_fuzz * fuzzy[label]
                )
                continue
            centroid = self._centroids[label]
            centroid_cos = sum(w * centroid.get(t, 0.0) for t, w in query.items())
            combined[label] = (
                nearest + config.weight_centroid * centroid_cos + config.weight_fuzz * fuzzy[label]
            )
        return combined, best_phrasing, grounded

    def _lone_word_language(self, folded: str) -> Language | None:
        """English for a lone word the knowledge uses ("hello", "fees"); None for a name or id."""
        word = folded.strip()
        return Language.EN if word.isascii() and ("w:" + word) in self._known else None

    def parse(self, text: str, fallback_language: Language = Language.ZH) -> Parse:
        folded = fold(text)
        entities = extract_entities(folded)
        language = (
            detect_language(folded, current=fallback_language)
            or self._lone_word_language(folded)
            or fallback_language
        )
        marked = replace_entities(folded, entities)
        body = self._comparable(marked)
        if not body.strip():
            return Parse(Label.OUT_OF_SCOPE, 0.0, language, entities, reason="empty")
        decision = self._decide(body)
        if decision.reason is not None and decision.reason != "out_of_scope_example":
            decision = self._by_sound(body) or decision
        if len(body.replace(" ", "")) >= self.config.clause_min_chars:
            decision = self._by_clause(marked, decision)
        decision = self._across_boundary(marked, decision)
        label = decision.label if decision.reason is None else Label.OUT_OF_SCOPE
        return Parse(
            label,
            decision.score,
            language,
            entities,
            decision.alternatives,
            decision.coverage,
            decision.matched,
            decision.reason,
        )

    def _comparable(self, marked: str) -> str:
        """Folded text with entities marked, made comparable: no punctuation, letters repeated
        for emphasis once ("hiii"), upset and urgent words left out (they say how, not what:
        "烦死了 提现呢"), a letter typed twice undone ("hii"), pinyin read as the Chinese word
        ("zhuce" = 注册), typos and variants replaced by their canonical words."""
        text = self._undoubled(_REPEATED.sub(r"\1", strip_punctuation(marked)))
        if self._mood is not None:
            calm = " ".join(self._mood.sub(" ", f" {text} ").split())
            text = calm or text
        text = self._pinyin.apply(text, self._is_english)
        return self._synonyms.apply(text)

    def _undoubled(self, text: str) -> str:
        """English words typed with a letter doubled for warmth or by a slip ("hii", "byee",
        "thankss"): the word the knowledge knows, when it knows the word as typed not at all."""
        if not _DOUBLED.search(text):
            return text
        words = text.split(" ")
        for i, word in enumerate(words):
            if word.isascii() and word.isalpha() and _DOUBLED.search(word):
                single = _DOUBLED.sub(r"\1", word)
                if not self._is_english(word) and self._is_english(single):
                    words[i] = single
        return " ".join(words)

    def _is_english(self, word: str) -> bool:
        return word in _FILLER_WORDS or stem(word) in self._english

    def _decide(self, body: str) -> _Decision:
        """The best in-scope label for a comparable body, and why it is refused, if it is.

        An out-of-scope example refuses only when it matches clearly better (`oos_margin`) than
        every in-scope phrasing, and words only out-of-scope examples use refuse only when the
        out-of-scope examples also match nearly as well: one shared word is not enough."""
        combined, matched, grounded = self.scores(body)
        coverage, foreign = self.explain(body)
        contentless = coverage == _CONTENTLESS
        coverage = max(coverage, 0.0)
        config = self.config
        in_scope = sorted(
            ((label, s) for label, s in combined.items() if label != Label.OUT_OF_SCOPE),
            key=lambda kv: kv[1],
            reverse=True,
        )
        oos = combined.get(Label.OUT_OF_SCOPE, 0.0)
        # Words are coarser units than Chinese characters and bigrams: a short Latin-only
        # message that shares one word with a phrasing scores what a Chinese one earns with
        # more. (A long one has context words that lower its score and coverage anyway.)
        latin = not has_cjk(body) and len(body.split()) <= config.latin_short_words
        min_score = config.min_score_latin if latin else config.min_score
        min_coverage = config.min_coverage_latin if latin else config.min_coverage
        if not in_scope:
            refusal = "out_of_scope_example" if combined else "no_match"
            return _Decision(Label.OUT_OF_SCOPE, oos, (), coverage, None, refusal)
        (best, score), rest = in_scope[0], in_scope[1:]
        second = rest[0][1] if rest else 0.0
        # Between a thanks and a goodbye ("thanks, that's all" is both) either one closes.
        closings = bool(rest) and {best, rest[0][0]} <= CLOSING_LABELS
        reason: str | None = None
        said = len(body.replace(" ", "")) >= config.ungrounded_min_chars
        if oos >= score + config.oos_margin and (
            grounded
            or coverage < config.ungrounded_coverage
            or (said and oos >= score + config.ungrounded_margin)
        ):
            reason = "out_of_scope_example"
        elif score < min_score or (contentless and score < config.min_score_contentless):
            reason = "low_score"
        elif score - second < config.min_margin and not closings:
            reason = "ambiguous"
        elif not contentless and coverage < min_coverage:
            reason = "low_coverage"
        elif (
            foreign > config.max_foreign
            and oos >= score - config.foreign_margin
            and (grounded or coverage < config.ungrounded_coverage)
        ):
            reason = "foreign_topic"
        if reason is None:
            alternatives = tuple(Alternative(label, s) for label, s in rest[:3])
            return _Decision(best, score, alternatives, coverage, matched.get(best), None)
        alternatives = tuple(Alternative(label, s) for label, s in in_scope[:3])
        if reason == "out_of_scope_example":
            return _Decision(
                Label.OUT_OF_SCOPE,
                oos,
                alternatives,
                coverage,
                matched.get(Label.OUT_OF_SCOPE),
                reason,
                grounded,
            )
        return _Decision(best, score, alternatives, coverage, matched.get(best), reason)

    def _by_clause(self, marked: str, whole: _Decision) -> _Decision:
        """A long message judged by its question as well as by the whole text.

        The clause that asks, alone when it says enough and with the clause before it (its
        context), is scored on its own. A clause marked as the question (我想知道, a question
        mark) that is about a topic the bot does not cover refuses the message; otherwise a
        clause only rescues a whole text refused for a low score, low coverage or ambiguity
        (the best clause accepted with at least `clause_min_score`). A whole text that out-of-scope
        examples match best is not rescued by a clause of it, unless it shares none of their
        foreign words (a freelancer's story that happens to sound like "sell on Taobao") or
        they lead by less than `oos_rescue_lead` and a clause is clearly answered
        (`oos_rescue_score`: "…his friends come every morning for breakfast, so tell me how do I
        withdraw money")."""
        floor = self.config.clause_min_score
        only_asked = False
        if whole.reason in TOPIC_REFUSALS and whole.grounded:
            nearest = whole.alternatives[0].score if whole.alternatives else 0.0
            # Examples far ahead: only a clause marked as the question may still be it.
            only_asked = whole.score - nearest >= self.config.oos_rescue_lead
            floor = self.config.oos_rescue_score
        clauses = self._clause_words.split(marked)
        if len(clauses) < 2:
            return whole
        at = self._clause_words.question(clauses)
        question = clauses[at]
        if only_asked and not self._says_alone(question, clauses):
            return self._pleasantry(clauses, whole)
        texts = []
        rescue = whole.reason is not None
        if len(question.text.replace(" ", "")) >= self.config.clause_min_chars // 2 and (
            question.asks or rescue
        ):
            texts.append((question.text, question.asks))
        if at > 0 and rescue and not only_asked:
            texts.append((f"{clauses[at - 1].text} {question.text}", False))
        best = whole
        best_value = -1.0
        for text, asks in texts:
            body = self._comparable(text)
            if not body.strip():
                continue
            decision = self._decide(body)
            if asks and decision.reason in TOPIC_REFUSALS:
                return decision
            if rescue and self._rescues(decision, best_value, floor):
                best, best_value = decision, decision.score
        if best is whole and rescue and not only_asked:
            asking = self._asking_clause(clauses, at, whole, floor)
            return self._pleasantry(clauses, whole) if asking is whole else asking
        return best

    def _pleasantry(self, clauses: list[Clause], whole: _Decision) -> _Decision:
        """A greeting or a thanks told with the day around it, asking nothing ("你好呀，我是楼下
        开花店的，今天刚开门…", "好的明白了，谢谢你！解释得很清楚…"): the greeting that opens
        it, or a thanks anywhere in it, unmistakable on its own (`pleasantry_score`). Only the
        greeting may ask ("Hi, anyone there? I'm sitting in my car outside the market…")."""
        if any(clause.asks for clause in clauses[1:]):
            return whole
        decisions = [
            self._decide(body) for clause in clauses if (body := self._comparable(clause.text))
        ]
        # Beside a clause about something the bot does not do ("tell me a joke, please,
        # anything to cheer me up"), only an opening greeting is taken ("Hello there! It's
        # pouring outside…"): a thanks there is likelier a word in passing.
        aside = any(d.reason in TOPIC_REFUSALS for d in decisions) or any(
            _leans_to_topic(d, self.config.clause_min_score) for d in decisions
        )
        for index, decision in enumerate(decisions):
            if decision.reason is not None or decision.score < self.config.pleasantry_score:
                continue
            if index == 0 and decision.label == Label.CHITCHAT_GREET:
                return decision
            if decision.label == Label.CHITCHAT_THANKS and not aside:
                return decision
        return whole

    def _asking_clause(
        self, clauses: list[Clause], at: int, whole: _Decision, floor: float
    ) -> _Decision:
        """The question is not always where the clause words put it: "can u make me a link,
        customer wants to pay a deposit" asks first and tells after; "wtf where is my money,
        been waiting forever" complains after it. When the question clause rescues nothing,
        another clause that asks for something (a request or pending marker of
        `knowledge/requests.yaml`) does, the best of them."""
        best, best_value = whole, -1.0
        for i, clause in enumerate(clauses):
            if i == at or len(clause.text.replace(" ", "")) < self.config.clause_min_chars // 2:
                continue
            if not self._requests.marked(marker_key(clause.text)):
                continue
            body = self._comparable(clause.text)
            decision = self._decide(body) if body.strip() else whole
            if self._rescues(decision, best_value, floor):
                best, best_value = decision, decision.score
        return best

    def _says_alone(self, question: Clause, clauses: list[Clause]) -> bool:
        """The one clause marked as asking, long enough to carry its topic on its own (five
        words, or eight characters): "is my data actually safe with you guys?" before the story
        of a friend's hacked app; not "what's the process?" after the story it needs."""
        if not question.asks or sum(clause.asks for clause in clauses) > 1:
            return False
        text = question.text.strip()
        return len(text.split()) >= 5 if text.isascii() else len(text.replace(" ", "")) >= 8

    @staticmethod
    def _rescues(clause: _Decision, best: float, floor: float) -> bool:
        """A clause's decision rescues a refused message: accepted, with at least `floor`
        (`clause_min_score`, or `oos_rescue_score` against out-of-scope examples), and better
        than the best clause so far."""
        return clause.reason is None and clause.score >= floor and clause.score > best

    def _across_boundary(self, marked: str, decision: _Decision) -> _Decision:
        """A topic label moved to its flow by a request marker (`knowledge/requests.yaml`):
        "a payment link please" is `action.payment_link`, not `methods.link`; a tie between a
        topic and its flow goes to the flow when the marker is there. Refusals for any other
        reason stand."""
        key = marker_key(marked)
        if decision.reason is None:
            target = self._requests.target(decision.label, key)
            if target is None:
                return decision
            kept = tuple(a for a in decision.alternatives if a.label != target)
            moved = (Alternative(decision.label, decision.score), *kept)[:3]
            return replace(decision, label=target, alternatives=moved, matched=None)
        if decision.reason == "low_coverage":
            return self._detailed_request(marked, key, decision)
        if decision.reason != "ambiguous" or len(decision.alternatives) < 2:
            return decision
        first, second = decision.alternatives[0].label, decision.alternatives[1].label
        target = self._requests.settles(first, second, key)
        if target is None:
            return decision
        kept = tuple(a for a in decision.alternatives if a.label != target)
        return replace(decision, label=target, alternatives=kept, matched=None, reason=None)

    def _detailed_request(self, marked: str, key: str, decision: _Decision) -> _Decision:
        """A request for a flow with its value and a story around it ("hey need a payment
        link for 75 bucks for a fruit basket order"): the story's words lower the coverage,
        but the marker and the amount say what is asked. Only a flow a marker moves to, with
        the amount it needs, is accepted this way."""
        best = decision.alternatives[0] if decision.alternatives else None
        if best is None or (_AMOUNT_MARK not in f" {key} " and read_amount(marked) is None):
            return decision
        target = self._requests.toward(best.label, key)
        if target is None:
            return decision
        kept = tuple(a for a in decision.alternatives if a.label != target)
        return replace(
            decision, label=target, score=best.score, alternatives=kept, matched=None, reason=None
        )

    def _by_sound(self, body: str) -> _Decision | None:
        """A short Chinese message that sounds exactly like a short phrasing of one label
        ("泥好" = 你好, "白白" = 拜拜): that label; None for anything else."""
        compact = body.replace(" ", "")
        if not (0 < len(compact) <= _SOUND_MAX_CHARS and _ALL_CJK.fullmatch(compact)):
            return None
        label = self._sounds.get(sound(compact))
        if label is None:
            return None
        return _Decision(label, self.config.min_score_contentless, (), 1.0, None, None)


def _mood_pattern(knowledge: Knowledge) -> re.Pattern[str] | None:
    """The upset and urgent words of `knowledge/dialogue.yaml` (not the complaint ones, which
    ask for a person): English as whole words, Chinese wherever they appear."""
    phrases = knowledge.words.phrases
    complaint = phrases.get("complaint", frozenset())
    words = {
        key
        for kind in ("upset", "urgent")
        for phrase in phrases.get(kind, frozenset())
        if phrase not in complaint and (key := strip_punctuation(fold(phrase)))
    }
    if not words:
        return None
    ordered = sorted(words, key=len, reverse=True)
    return re.compile(
        "|".join(
            rf"(?<=[ ]){re.escape(w)}(?=[ ])" if w.isascii() else re.escape(w) for w in ordered
        )
    )


# Refusals because the text is about something the bot does not cover.
TOPIC_REFUSALS = frozenset({"out_of_scope_example", "foreign_topic"})


def _leans_to_topic(decision: _Decision, floor: float) -> bool:
    """A clause whose nearest in-scope label is a topic, not a pleasantry, at `floor` or more
    ("what about my 2.5k withdrawal" beside a "thx")."""
    nearest = (
        (decision.label, decision.score)
        if decision.reason is None
        else next(((a.label, a.score) for a in decision.alternatives), (None, 0.0))
    )
    return nearest[0] is not None and nearest[0] not in CHITCHAT_LABELS and nearest[1] >= floor


_AMOUNT_MARK = PLACEHOLDERS["amount"]
# Letters repeated three times or more, for emphasis ("hiii", "pleeease").
_REPEATED = re.compile(r"([a-z])\1{2,}")
# A letter typed twice ("hii", "byee"): undone only where the word is otherwise unknown.
_DOUBLED = re.compile(r"([a-z])\1")
_ALL_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_LATIN = re.compile(r"[a-z]+")
# Messages and phrasings of at most this many characters are compared by sound.
_SOUND_MAX_CHARS = 4


@dataclass(frozen=True, slots=True)
class _Decision:
    label: Label
    score: float
    alternatives: tuple[Alternative, ...]
    coverage: float
    matched: str | None
    reason: str | None
    # For a refusal by an out-of-scope example: whether the message shares what makes the
    # example out of scope (see `Matcher.scores`).
    grounded: bool = True
