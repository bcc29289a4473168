"""Task success evaluation: did a task do what its user wanted?

An ``Evaluator`` looks at one ``TaskContext`` (the task, its feedback, its neighbours in
its session, the app's system prompt) and returns an ``Evaluation`` (label ``success`` /
``failure`` / ``unknown``, a score, its source and a reason in words), or None when it has
no opinion. The built-in evaluators are heuristics that need no model, each with the
source ``heuristic:<name>``:

======================== =========================================================  =====
name                     verdict                                                    score
======================== =========================================================  =====
``error``                failure: the task's status is ``error``                    0.05
``no_output``            failure: the output is missing, empty or only whitespace   0.05
``refusal``              failure: the output refuses, or apologises without         0.15
                         answering ("I'm sorry, but I can't...", "I can only...",
                         "I don't have access to...", "Unfortunately, I'm not
                         sure", "an error occurred, please try again later",
                         "Désolée, je ne peux pas", "Lo siento, no puedo",
                         "Entschuldigung, ... Fehler"; or nothing but apologies
                         and "anything else I can help you with?"), looked for
                         in its first 200 characters. Two exceptions, read from
                         ``TaskContext.events``: refusing a prompt-injection
                         attempt (``ATTACK_EVENTS``) is a **success** (source
                         ``heuristic:refused_attack``, score 0.7); declining an
                         insult (``INSULT_EVENTS``) is no opinion
``repetition``           failure: the output repeats an earlier output of the       0.3
                         session (>= 80% of its content words, at least 3)
``complaint``            failure: the user's next message complains ("that's        0.15
                         wrong", "not helpful", "thanks for nothing", "never
                         mind") or says the fix did not work ("it still drops",
                         "I already tried that", "same error", "nothing changed",
                         "ça ne marche toujours pas", "sigue sin funcionar",
                         "immer noch", "hat nichts gebracht", "non funziona",
                         "não funciona")
``rephrase``             failure: the user's next message asks the same thing       0.3
                         again: it repeats it, starts with "I meant" / "no, ..." /
                         "let me rephrase", or shares most of its content words
                         (Jaccard >= 0.6 on content-word stems, at least two)
``left_after_complaint`` failure: the session has ended after this task              0.3
                         (``TaskContext.session_ended``, no next message), and
                         its own input was a complaint (or carries a frustration
                         event) that asked nothing new (no "?"): the user's last
                         word was a complaint. Not for an insult.
``thanks``               success: the user's next message thanks or approves        0.9
                         ("thanks", "perfect", "that helped", "it works now"), and
                         does not complain (sarcasm such as "thanks for nothing"
                         is a complaint; "not perfect" does not count)
``answered``             weak success: the task has an output (no error, no         0.6
                         refusal), and either the user's next message moves on to
                         something else (no complaint or rephrase), or the session
                         has ended after it and nothing says it failed: "answered,
                         and the user left without complaint". Not when the output
                         asks the user something in its last 150 characters (a
                         clarifying question or an offer never taken up: unknown),
                         nor after an insult or a complaint that asked nothing.
                         Before the session has ended, a task with no next
                         message gets no opinion (the user may still reply).
======================== =========================================================  =====

``EvaluationPipeline`` combines them with one rule, in this order:

1. the task's user feedback, when it has any, wins (source ``user_feedback``, score 1 or
   0; the latest feedback is the one in ``TaskContext.feedback``, so a later feedback
   replaces an earlier evaluation when the task is evaluated again);
2. a failure from ``error`` or ``no_output`` (facts, not guesses);
3. a verdict of the LLM judge, when one is given and it is not ``unknown``;
4. any failure signal beats any success signal; among failures the strongest (lowest
   score) wins, among successes the highest score; ties go to the evaluator listed first;
5. no signal at all: ``unknown``, score 0.5, source ``heuristics``.

The reason of the winner is kept, and the other signals are named after it.

Evaluations depending on ``TaskContext.next`` or ``session_ended`` change when the next
task arrives or the session ends: the analyzer evaluates a task again then. It runs the
event detector first, so ``TaskContext.events`` holds the names found on the task.
Measured cost of the default pipeline: 22-35 µs of CPU per task on chat sessions, on a
loaded 2-core VM (``tests/insights/test_evaluation.py::test_pipeline_is_fast`` asserts <
50 µs). It stays low because each text is searched once (the helpers cache their answers
by text, bounded), outputs only in their first characters, and each phrase list only when
the text holds one of its words.

``evaluate_session`` makes a session-level evaluation from its tasks' evaluations (and
session feedback, which wins). The text helpers (``find_refusal``, ``find_complaint``,
``find_thanks``, ``find_rephrase``, ``content_words``) are exported for other insights
(events, user classes) to reuse.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import NamedTuple, Protocol, runtime_checkable

from phospho_otel.insights.context import TaskContext
from phospho_otel.model.analysis import Evaluation
from phospho_otel.model.records import SessionEventRecord, TaskRecord

__all__ = [
    "ATTACK_EVENTS",
    "DEFAULT_EVALUATORS",
    "FACT_RULES",
    "FRUSTRATION_EVENTS",
    "INSULT_EVENTS",
    "REPEAT_CONTAINED",
    "REPEAT_MIN_SHARED",
    "Answered",
    "Complaint",
    "ErrorStatus",
    "EvaluationPipeline",
    "Evaluator",
    "LeftAfterComplaint",
    "NoOutput",
    "Refusal",
    "Repetition",
    "Rephrase",
    "Thanks",
    "content_words",
    "evaluate_session",
    "feedback_evaluation",
    "find_complaint",
    "find_refusal",
    "find_rephrase",
    "find_thanks",
    "is_refusal",
    "normalize",
    "unknown",
]

SOURCE_FEEDBACK = "user_feedback"
SOURCE_SESSION_TASKS = "tasks"
"""``Evaluation.source`` of a session evaluation made from its tasks' evaluations."""

_HEAD_CHARS = 200
"""Outputs are searched for refusals in their first characters only (refusals come
first; this keeps the cost bounded on long outputs)."""
_INPUT_CHARS = 600
"""User messages are searched and compared in their first characters only."""
_QUOTE_CHARS = 80
_ASKS_BACK_CHARS = 150
"""An output with a question mark in its last characters asks the user something."""

ATTACK_EVENTS = ("prompt_injection",)
"""Events of a task whose input attacks the app: refusing it is a success."""
INSULT_EVENTS = ("abuse",)
"""Events of a task whose input is an insult: it asks for nothing, so declining it, or
answering it before the user leaves, is neither a success nor a failure."""
FRUSTRATION_EVENTS = ("frustration",)
"""Events of a task whose input is a complaint (as ``find_complaint``)."""
REPEAT_MIN_SHARED = 3
REPEAT_CONTAINED = 0.8
"""An output whose content words are at least this share of an earlier output's (and at
least ``REPEAT_MIN_SHARED`` of them) repeats it."""


@runtime_checkable
class Evaluator(Protocol):
    """Something that judges one task: returns an ``Evaluation``, or None (no opinion)."""

    name: str

    def evaluate(self, ctx: TaskContext) -> Evaluation | None: ...


# --- text helpers ----------------------------------------------------------------------

_APOSTROPHES = (("\u2019", "'"), ("\u2018", "'"), ("\u02bc", "'"), ("`", "'"))


@lru_cache(maxsize=8192)
def _normalized(head: str) -> str:
    if not head.isascii():  # curly apostrophes
        for curly, straight in _APOSTROPHES:
            head = head.replace(curly, straight)
    return " ".join(head.lower().split())


def normalize(text: str | None, limit: int = _INPUT_CHARS) -> str:
    """``text``'s first ``limit`` characters, lower-cased, with straight apostrophes and
    single spaces ("" for None)."""
    if not text:
        return ""
    return _normalized(text[:limit])  # cached by the head: memory stays bounded


def _quote(original: str, start: int) -> str:
    """A short quote of the (normalized) text from ``start``, for a reason."""
    piece = original[start:start + _QUOTE_CHARS]
    return piece + ("..." if len(original) > start + _QUOTE_CHARS else "")


_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
"""Words of a normalized text, for gates and for content words ("can't" and "j'ai" are one
word; accented letters are letters)."""


class _Phrases:
    """Alternative regexes searched together, behind a gate: each alternative needs one of
    the ``gate`` words, so text without any of them is skipped without running the regex
    (Python's ``re`` tries every alternative at every position: slow with many)."""

    __slots__ = ("branches", "gate", "pattern")

    def __init__(self, branches: Sequence[str], gate: Iterable[str]) -> None:
        self.branches = tuple(branches)
        self.gate = frozenset(gate)
        # one word-boundary test for all the branches that start with one: much faster
        bounded = [b.removeprefix(r"\b") for b in self.branches if b.startswith(r"\b")]
        others = [b for b in self.branches if not b.startswith(r"\b")]
        self.pattern = re.compile("|".join(
            [r"\b(?:" + "|".join(f"(?:{b})" for b in bounded) + ")"] * bool(bounded)
            + [f"(?:{b})" for b in others]))

    def finditer(self, text: str, words: frozenset[str]) -> Iterator[re.Match[str]]:
        """The matches in ``text`` (normalized), whose words are ``words``."""
        if not self.gate.isdisjoint(words):
            yield from self.pattern.finditer(text)

    def search(self, text: str, words: frozenset[str]) -> re.Match[str] | None:
        return next(self.finditer(text, words), None)


_CANT = r"(?:can't|cannot|can not|won't|will not|am unable to|'m unable to|am not able to|" \
        r"'m not able to|couldn't|could not|was unable to|wasn't able to|am not allowed to|" \
        r"'m not allowed to)"
_REFUSAL = _Phrases([
    r"\bi(?:'m| am) (?:sorry|afraid),? (?:but )?(?:i|that i) (?:can't|cannot|can not|won't|"
    r"couldn't|could not|don't|do not|am unable|'m unable|am not able|'m not able|have no)",
    r"\bsorry,? (?:but )?i (?:can't|cannot|can not|won't|couldn't|could not|am unable|"
    r"'m unable|don't|do not)",
    rf"\bi {_CANT} (?:help|assist|provide|answer|do that|do this|comply|fulfil|fulfill|share|"
    r"access|browse|find|give|offer|generate|create|write|complete|process|support|respond|"
    r"discuss|engage|look up|retrieve|perform|continue|tell|change|modify|cancel|book|"
    r"transfer|issue|connect)",
    r"\bi (?:don't|do not) have (?:access|the ability|the capability|real-time|realtime|any "
    r"information|information|enough information|the information|personal|browsing|the "
    r"means|any way|a way|any data|data on|details)",
    r"\bi have no (?:information|access|way|ability|knowledge|data|details)",
    r"\bi (?:don't|do not) know\b",
    r"\bi (?:couldn't|could not|was unable to|wasn't able to) (?:find|locate|retrieve|"
    r"determine)",
    r"\bas an ai(?: language model| assistant| model)?,? i (?:can't|cannot|don't|do not|"
    r"am not|'m not|am unable|have no|won't)",
    r"\bas an ai language model\b",
    r"\b(?:beyond|outside) (?:my|the scope of my) (?:capabilities|abilities|knowledge|scope)",
    r"\bi must (?:respectfully )?(?:decline|refuse)",
    r"\b(?:against|violates?|violating) (?:my|our|the|openai's) (?:guidelines|policies|policy|"
    r"content policy|usage policies|programming)",
    r"\bunfortunately,? i (?:can't|cannot|don't|do not|couldn't|could not|am unable|"
    r"'m unable|have no|am not able|'m not able)",
    r"\bi(?:'m| am) (?:not able|unable) to\b",
    r"\bi(?:'m| am) not (?:able|allowed|permitted|designed) to\b",
    # declining by scope, not knowing, failing: "I'm sorry, I can only...", "I'm not sure
    # what to suggest", "an error occurred, please try again later"
    r"\b(?:i(?:'m| am) )?sorry,? (?:but )?i (?:can only|only|didn't understand|did not "
    r"understand|don't understand|do not understand)\b",
    r"\bunfortunately,? i(?:'m| am) not sure\b",
    r"\bi(?:'m| am) not sure (?:what|how) to (?:suggest|do|help|answer|say|advise)\b",
    r"\b(?:an error (?:has )?occurred|something went wrong)\b",
    r"\bplease try again later\b",
], gate="""sorry afraid unable cannot can't won't couldn't wasn't don't not no ai beyond
    outside decline refuse against violate violates violating unfortunately sure error
    wrong later""".split())
_REFUSAL_OTHER = _Phrases([
    # French, Spanish, German, Italian, Portuguese: an apology (or "unfortunately") then
    # "I cannot / do not know", an apology for an error, "try again later"
    r"\b(?:je suis )?d[ée]sol[ée]e?s?,? (?:mais )?(?:je ne (?:peux|pourrai|sais|suis pas)|"
    r"je n'ai pas|il m'est impossible)",
    r"\bmalheureusement,? je ne (?:peux|pourrai|sais)\b",
    r"\bje ne suis pas en mesure de\b",
    r"\b(?:lo siento|lo lamento|perdona|perdone|disculpa|disculpe|lamentablemente|"
    r"desafortunadamente),? (?:pero )?no (?:puedo|sé|tengo|es posible|me es posible)\b",
    r"\b(?:entschuldigung|es tut mir leid|tut mir leid|sorry),? (?:aber )?ich (?:kann|darf|"
    r"weiß)\b[^.!?]{0,60}\bnicht\b",
    r"\b(?:entschuldigung|es tut mir leid|tut mir leid)\b[^.!?]{0,60}\bfehler\b",
    r"^leider (?:kann|darf|konnte) ich\b",
    r"\b(?:ein fehler ist aufgetreten|ist ein fehler aufgetreten|une erreur s'est produite|"
    r"se ha producido un error|ocurrió un error|si è verificato un errore|ocorreu um erro)\b",
    r"\b(?:bitte versuchen sie es später|veuillez réessayer plus tard|réessayez plus tard|"
    r"inténtalo (?:de nuevo )?más tarde|vuelva a intentarlo más tarde|riprova più tardi|"
    r"tente novamente mais tarde)\b",
    r"\b(?:mi dispiace|purtroppo),? (?:ma )?non (?:posso|sono in grado|so)\b",
    r"\b(?:desculpe|lamento|sinto muito|infelizmente),? (?:mas )?n[ãa]o (?:posso|consigo|"
    r"sei)\b",
], gate="""désolé désolée désolés désolées desole desolee malheureusement mesure siento
    lamento perdona perdone disculpa disculpe lamentablemente desafortunadamente entschuldigung
    leid sorry leider fehler erreur error errore erro später tard tarde réessayer réessayez
    riprova tente dispiace purtroppo desculpe muito infelizmente""".split())
"""Refusals in French, Spanish, German, Italian and Portuguese, behind their own gate."""

_PLEASANTRY = re.compile(
    r"(?:i(?:'m| am) |we(?:'re| are) )?(?:so |very |really |truly )?sorry(?: to hear that| "
    r"(?:for|about) (?:the|any|this|that) (?:inconvenience|confusion|trouble|frustration|"
    r"delay|wait|misunderstanding|issue)| about that| you feel that way)?"
    r"|(?:i|we) (?:do |sincerely )?apologi[sz]e(?: for (?:the|any|this|that) (?:inconvenience|"
    r"confusion|trouble|frustration|delay|wait|misunderstanding|issue))?"
    r"|(?:i )?understand(?: your frustration| how you feel)?|i understand that"
    r"|thank you for your (?:patience|understanding)"
    r"|is there anything else (?:i can (?:help|assist) (?:you )?with|i can do for you)"
    r"|how else can i (?:help|assist)(?: you)?"
    r"|(?:please )?let me know if (?:you need|there is|there's) anything else"
    r"|i(?:'m| am) here (?:if|when) you need (?:help|anything|me)(?: with [^.!?]*)?")
"""Sentences that are only an apology or a deflection ("I apologise for the inconvenience",
"Is there anything else I can help you with?"): an output made of nothing else does not
answer."""
_APOLOGY = re.compile(r"sorry|apologi[sz]e|understand|i(?:'m| am) here")
_SENTENCE_END = re.compile(r"[.!?]+\s*")
_PLEASANTRY_MAX_CHARS = 200
_DISCLAIMER = "as an ai language model"
_DISCLAIMER_MIN_CHARS = 400
""""As an AI language model" alone is a refusal only in a short output (under about 60
words); a long answer that begins with that hedge is an answer."""

_COMPLAINT = _Phrases([
    r"\bthat(?:'s| is| was) (?:wrong|incorrect|not (?:right|correct|true|it|what i|helpful|"
    r"useful|the answer)|false|nonsense|useless|unhelpful|bs|rubbish|garbage|terrible|"
    r"awful|bad|a bad)",
    r"\b(?:this|it)(?:'s| is| was) (?:wrong|incorrect|useless|unhelpful|nonsense|garbage|"
    r"rubbish|terrible|not (?:right|correct|helpful|working|what i))",
    r"\b(?:wrong|incorrect|bad|useless|terrible|stupid|dumb) (?:answer|response|reply|again)",
    r"\bnot (?:helpful|useful|correct|right|what i (?:asked|meant|wanted|need|needed)|"
    r"an answer)",
    r"\bunhelpful\b", r"\buseless\b", r"\bpointless\b",
    r"\byou (?:didn't|did not|don't|do not|haven't|have not|never) (?:answer|understand|"
    r"listen|read|get it|help|address)",
    r"\b(?:doesn't|does not|didn't|did not) (?:answer|help|work|make (?:any )?sense|address)",
    r"\b(?:still|it's still|that's still) (?:wrong|not working|broken|doesn't|does not|"
    r"not right|the same|failing)",
    r"\bnot what i (?:asked|meant|wanted|need)",
    r"\b(?:makes|made) no sense\b",
    r"\byou(?:'re| are) (?:wrong|useless|not listening|not helping|not helpful|stupid|"
    r"an idiot|making (?:it|things|stuff) up|hallucinating|confused)",
    r"\bthanks? (?:a lot |so much |very much )?for nothing\b",
    r"\bthanks? anyway\b", r"\bthanks? for trying\b",
    r"\bnever ?mind\b", r"\bforget (?:it|about it)\b",
    r"\b(?:great|wow|oh great|perfect|brilliant|fantastic|awesome),? (?:another|more|"
    r"even more|just what i needed,? another) (?:useless|wrong|unhelpful|non-answer|"
    r"nonsense|garbage|bad)",
    r"\b(?:so|very|really|super) helpful\b(?:[.!]*\s*(?:not|/s)\b|\.\.\.)",
    r"\b(?:broken|wrong|failing) again\b",
    r"\byeah,? right\b",
    r"\bwaste of (?:my )?time\b",
    r"\bwhat a (?:waste|joke)\b",
    r"\byou already (?:said|told me) that\b",
    r"\bsame (?:answer|thing|response) (?:again|as before)\b",
    r"\bstop (?:repeating|making things up|making stuff up|apologi[sz]ing)\b",
    r"\bthat(?:'s| is) not (?:what|how)\b",
    r"\bi (?:already|just) (?:said|told you|asked)\b",
    r"^(?:ugh|wtf|seriously|come on|nope)\b",
    r"\bno,? (?:that's|thats|that is|it's|it is) (?:wrong|not)\b",
    r"\bare you (?:even|kidding|serious|stupid|broken)\b",
    r"\banswer (?:the|my) question\b",
    r"^(?:no,? |nope,? |that's |thats |still |totally |completely |all |so |just )?wrong\b",
], gate="""wrong incorrect not false nonsense useless unhelpful bs rubbish garbage terrible
    awful bad stupid dumb pointless didn't don't haven't never doesn't still sense idiot making
    hallucinating confused nothing anyway trying nevermind forget answer helpful broken failing
    yeah waste joke already same stop said told asked ugh wtf seriously come nope even kidding
    serious""".split())
_FIX_FAILED = _Phrases([
    # the fix did not work: "it still drops", "I already tried that", "same error",
    # "nothing changed", in English, French, Spanish, German, Italian and Portuguese
    r"\b(?:it|this|they|mine|i)(?:'s| is| are| am|'m)? still\b",
    r"(?:^|(?<=[.!?;,] )|(?<=[.!?;,]))still\b",
    r"\bstill (?:the same|not|no|doesn't|does not|won't|can't|fails|failing|broken|drops|"
    r"dropping|crashes|crashing|getting|gives|giving|shows|showing|happening|happens|slow|"
    r"hangs|hanging)\b",
    r"\bi(?:'ve| have| had)? already (?:did|done|tried|do|restarted|rebooted|reinstalled|"
    r"checked|installed|said|told|asked)\b",
    r"\b(?:tried|did|done|restarted|rebooted|checked|reinstalled) (?:that|it|this)\b"
    r"(?: [^.!?]{0,30})? already\b",
    r"\b(?:the )?(?:same|identical) (?:error|problem|issue|result|output|message|exception)\b",
    r"\bnothing (?:changed|changes|happened|happens|works|worked|helped|helps)\b",
    r"\b(?:didn't|did not|doesn't|does not|won't) (?:change|fix|solve) (?:anything|a thing)\b",
    r"\b(?:made|makes) no difference\b", r"\bno change\b", r"\bnot working\b",
    r"\b(?:ça|ca|cela) ne (?:marche|fonctionne) (?:toujours )?pas\b",
    r"\btoujours (?:pas|le même|la même|rien|en panne)\b", r"\bj'ai déjà\b",
    r"\brien n'a changé\b", r"\bn'a rien (?:changé|donné|fait)\b",
    r"\b(?:la )?même (?:erreur|problème)\b", r"\b(?:le )?même problème\b",
    r"\bno funciona\b", r"\bsigue (?:sin|igual|fallando|dando|sin funcionar)\b",
    r"\btodavía no (?:funciona|va)\b", r"\bya lo (?:hice|intenté|probé)\b",
    r"\b(?:el )?mismo (?:error|problema)\b", r"\bnada (?:cambió|ha cambiado)\b",
    r"\bno (?:ha cambiado nada|sirvió|sirve de nada|me sirve)\b",
    r"\bfunktioniert (?:immer noch |noch immer |trotzdem )?nicht\b",
    r"\b(?:immer noch|noch immer)\b", r"\b(?:hat|hilft|bringt) (?:nichts|nicht)\b",
    r"\bhat nicht geholfen\b", r"\bschon (?:gemacht|versucht|probiert)\b",
    r"\bhab(?:e)? ich (?:schon|bereits)\b", r"\b(?:der )?(?:gleiche|selbe|derselbe) fehler\b",
    r"\bnichts (?:geändert|gebracht)\b",
    r"\bnon funziona\b", r"\bancora (?:non|lo stesso|uguale|niente)\b",
    r"\b(?:l'ho )?già (?:fatto|provato)\b", r"\b(?:lo )?stesso (?:errore|problema)\b",
    r"\bnon è cambiato (?:niente|nulla)\b", r"\bnon ha funzionato\b",
    r"\bn[ãa]o funciona\b", r"\bainda (?:n[ãa]o|dá|o mesmo|a mesma)\b",
    r"\bjá (?:fiz|tentei)\b", r"\b(?:o )?mesmo (?:erro|problema)\b", r"\bnada mudou\b",
    r"\bn[ãa]o (?:mudou nada|adiantou|resolveu)\b", r"\bcontinua (?:igual|sem|a dar|dando)\b",
], gate="""still already same identical nothing didn't doesn't won't made makes change
    working marche fonctionne toujours déjà rien n'a même funciona sigue todavía intenté hice
    probé mismo nada sirvió sirve funktioniert immer noch hilft bringt nichts geholfen schon
    hab habe gleiche selbe derselbe funziona ancora già stesso cambiato funzionato ainda já
    mesmo mudou adiantou resolveu continua""".split())
"""Complaints that the fix did not work, kept apart from ``_COMPLAINT`` behind their own
gate (its words are rarer), so that most messages run one of the two regexes at most."""

_THANKS = _Phrases([
    r"\bthanks?\b", r"\bthank you\b", r"\bthank u\b", r"\bthx\b", r"\bty\b", r"\btysm\b",
    r"\bcheers\b", r"\bmuch appreciated\b", r"\bappreciate (?:it|that|this|the help|your)\b",
    r"\bthat(?:'s| is) (?:great|exactly|right|correct|what i (?:needed|wanted)|perfect|"
    r"helpful|useful|very helpful|super helpful|really helpful|good|awesome|brilliant)\b",
    r"\b(?:that|this|it) (?:helped|helps|did it|did the trick|fixed it|solved it)\b",
    r"\b(?:works|working) (?:now|perfectly|great|fine)\b",
    r"\bexactly what i (?:needed|wanted|was looking for)\b",
    r"\b(?:great|good|nice|helpful|perfect) (?:answer|explanation|job|work|stuff)\b",
    r"\bgot it\b", r"\bmakes sense\b", r"\b(?:super|very|so|really) helpful\b",
    r"\byou(?:'re| are) (?:the best|a lifesaver|amazing|awesome|great)\b",
    # only at the start of a message: in a longer one these words belong to a new question
    r"^(?:ok(?:ay)?,? |oh,? |yes,? |yay,? |wow,? )?(?:perfect|excellent|awesome|brilliant|"
    r"amazing|fantastic|wonderful|great|nice|cool|love it|lovely|sweet)\b",
    r"^(?:ok(?:ay)?,? |yes,? |yay,? )?(?:that|this|it) (?:works|worked)\b",
], gate="""thanks thank thx ty tysm cheers appreciated appreciate great exactly right correct
    needed wanted perfect helpful useful good awesome brilliant helped helps did fixed solved
    works working worked nice got sense best lifesaver amazing excellent fantastic wonderful
    cool love lovely sweet""".split())
_NEGATIONS = frozenset("not no never hardly nothing nor".split())
"""A negation in the few words before an approval ("not perfect", "isn't very helpful")
cancels it."""


def _negated(text: str, start: int) -> bool:
    before = text[max(0, start - 30):start].split()[-3:]
    return any(w in _NEGATIONS or w.endswith("n't") for w in before)


_REPHRASE_MARKER = re.compile(
    r"^(?:i meant\b|i mean\b|what i meant\b|what i mean\b|no,? i (?:meant|mean|asked|said|"
    r"want|wanted|need)\b|no,? (?:what|how|why|where|when|who|which|i|the|my|please|"
    r"can|could|tell|just|not|again)\b|let me (?:rephrase|try again|clarify|be clearer|"
    r"ask again)\b|to (?:clarify|be clear|rephrase)\b|in other words\b|again[:,]|i repeat\b|"
    r"once again\b|i said\b|i asked\b|i'm asking\b|i am asking\b|rephras)")
"""How a user starts asking the same thing again."""
_NOT_A_REPHRASE = re.compile(r"no,? (?:thanks|thank|worries|problem)")

_STOPWORDS = frozenset("""
a an the and or but if then so of to in on at by for with from into about as is are was were
be been being am do does did doing have has had having i me my mine we us our you your he she
it its they them their this that these those there here what which who whom whose when where
why how can could would should will shall may might must please pls plz tell show give get
let just also too very really some any all more most much many few no not yes ok okay hi hey
hello thanks thank up out over again like want need know one s t d ll m re ve its it's i'm
don't can't what's how's that's there's
""".split())
REPHRASE_JACCARD = 0.6
"""Content-word Jaccard similarity (of stems) at and above which the next message asks
the same thing again."""
REPHRASE_MIN_SHARED = 2


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    for suffix in ("ing", "ies", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


class _Message(NamedTuple):
    """What the heuristics read in one user message (computed once per text)."""

    text: str
    """Normalized."""
    content: frozenset[str]
    """Stems of its content words."""
    complaint: str | None
    thanks: str | None


@lru_cache(maxsize=8192)
def _message(text: str) -> _Message:
    words = frozenset(_TOKEN.findall(text))
    content = frozenset(_stem(w) for w in words if w not in _STOPWORDS)
    match = _COMPLAINT.search(text, words) or _FIX_FAILED.search(text, words)
    if match is not None:
        return _Message(text, content, _quote(text, match.start()), None)
    thanks = None
    for match in _THANKS.finditer(text, words):
        if not _negated(text, match.start()):
            thanks = _quote(text, match.start())
            break
    return _Message(text, content, None, thanks)


@lru_cache(maxsize=8192)
def _head_tokens(head: str) -> frozenset[str]:
    """The words of an output's normalized head (shared by the refusal gate and
    ``Repetition``)."""
    return frozenset(_TOKEN.findall(head))


def _output_words(output: str | None) -> frozenset[str]:
    """The content-word stems of an output's first ``_HEAD_CHARS`` characters."""
    return _words_of(normalize(output, _HEAD_CHARS)) if output else frozenset()


@lru_cache(maxsize=8192)
def _words_of(head: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _head_tokens(head) if w not in _STOPWORDS)


def content_words(text: str | None) -> frozenset[str]:
    """The stems of ``text``'s words that carry content (stop words left out)."""
    return _message(normalize(text)).content


def find_refusal(output: str | None) -> str | None:
    """A quote of the refusal or polite non-answer at the start of ``output``, or None."""
    head = normalize(output, _HEAD_CHARS)
    if not head:
        return None
    return _refusal_in(head, len(output or "") >= _DISCLAIMER_MIN_CHARS)


@lru_cache(maxsize=8192)
def _refusal_in(head: str, long_output: bool) -> str | None:
    words = _head_tokens(head)
    for match in itertools.chain(_REFUSAL.finditer(head, words),
                                 _REFUSAL_OTHER.finditer(head, words)):
        if long_output and match.group(0) == _DISCLAIMER:
            continue
        return _quote(head, match.start())
    if not long_output and len(head) <= _PLEASANTRY_MAX_CHARS and _APOLOGY.search(head):
        sentences = [p for p in _SENTENCE_END.split(head) if p]
        if sentences and all(_PLEASANTRY.fullmatch(p) for p in sentences):
            return _quote(head, 0)
    return None


def is_refusal(output: str | None) -> bool:
    """True when ``output`` refuses or apologises without answering (``find_refusal``)."""
    return find_refusal(output) is not None


def find_complaint(message: str | None) -> str | None:
    """A quote of the complaint in a user ``message`` (sarcastic thanks included), or
    None."""
    text = normalize(message)
    return _message(text).complaint if text else None


def find_thanks(message: str | None) -> str | None:
    """A quote of the thanks or approval in a user ``message``, or None; None as well when
    the message complains (``find_complaint``) or the approval is negated ("not
    perfect")."""
    text = normalize(message)
    return _message(text).thanks if text else None


def find_rephrase(message: str | None, next_message: str | None) -> str | None:
    """Why ``next_message`` asks the same thing as ``message`` again, in words, or None."""
    first, second = normalize(message), normalize(next_message)
    if not first or not second:
        return None
    return _rephrase_of(first, second)


@lru_cache(maxsize=8192)
def _rephrase_of(first: str, second: str) -> str | None:
    if first == second:
        return "the user's next message repeats the question word for word"
    if _REPHRASE_MARKER.match(second) and not _NOT_A_REPHRASE.match(second):
        return f"the user's next message asks again: {_quote(second, 0)!r}"
    words, next_words = _message(first).content, _message(second).content
    shared = len(words & next_words)
    if shared < REPHRASE_MIN_SHARED:
        return None
    union = len(words | next_words)
    if shared / union >= REPHRASE_JACCARD:
        return (f"the user's next message asks much the same ({shared} of {union} content "
                f"words shared): {_quote(second, 0)!r}")
    return None


# --- the heuristics --------------------------------------------------------------------

def unknown(reason: str, source: str = "heuristics") -> Evaluation:
    """An ``unknown`` evaluation (score 0.5)."""
    return Evaluation("unknown", 0.5, source, reason)


class ErrorStatus:
    """Failure when the task's status is ``error``."""

    name = "error"

    def evaluate(self, ctx: TaskContext) -> Evaluation | None:
        if ctx.task.status != "error":
            return None
        return Evaluation("failure", 0.05, "heuristic:error", "the task ended with an error")


class NoOutput:
    """Failure when the task has no output (missing, empty or whitespace)."""

    name = "no_output"

    def evaluate(self, ctx: TaskContext) -> Evaluation | None:
        output = ctx.task.output
        if output is not None and output.strip():
            return None
        what = "no output" if output is None else "an empty output"
        return Evaluation("failure", 0.05, "heuristic:no_output", f"the task has {what}")


class Refusal:
    """Failure when the output refuses or apologises without answering; but refusing a
    prompt-injection attempt is a success, and declining an insult is neither (see
    ``ATTACK_EVENTS``, ``INSULT_EVENTS``)."""

    name = "refusal"

    def evaluate(self, ctx: TaskContext) -> Evaluation | None:
        quote = find_refusal(ctx.task.output)
        if quote is None:
            return None
        attack = _first_event(ctx, ATTACK_EVENTS)
        if attack is not None:
            return Evaluation("success", 0.7, "heuristic:refused_attack",
                              f"the output refuses a {attack.replace('_', '-')} attempt: "
                              f"{quote!r}")
        if _first_event(ctx, INSULT_EVENTS) is not None:
            return None
        return Evaluation("failure", 0.15, "heuristic:refusal",
                          f"the output apologises or refuses instead of answering: {quote!r}")


class Repetition:
    """Failure when the output says again what an earlier output of the session said (the
    assistant is going round in circles)."""

    name = "repetition"

    def evaluate(self, ctx: TaskContext) -> Evaluation | None:
        if not ctx.previous:
            return None
        output = _output_words(ctx.task.output)
        if len(output) < REPEAT_MIN_SHARED:
            return None
        for position, earlier in enumerate(reversed(ctx.previous), 1):
            shared = len(output & _output_words(earlier.output))
            if shared >= REPEAT_MIN_SHARED and shared / len(output) >= REPEAT_CONTAINED:
                which = "the previous answer" if position == 1 else \
                    f"the answer {position} turns before"
                return Evaluation("failure", 0.3, "heuristic:repetition",
                                  f"the output repeats {which} ({shared} of its "
                                  f"{len(output)} content words)")
        return None


class LeftAfterComplaint:
    """Weak failure when the session has ended after this task, and the task's own input
    was a complaint (or carries a frustration event) that asked for nothing new: the
    user's last word was a complaint."""

    name = "left_after_complaint"

    def evaluate(self, ctx: TaskContext) -> Evaluation | None:
        if ctx.next is not None or not ctx.session_ended:
            return None
        if _first_event(ctx, INSULT_EVENTS) is not None:
            return None  # an insult asks for nothing: its answer is neither
        text = normalize(ctx.task.input)
        if not text or "?" in text:  # it also asks something: the answer may settle it
            return None
        quote = _message(text).complaint
        if quote is None:
            event = _first_event(ctx, FRUSTRATION_EVENTS)
            if event is None:
                return None
            quote = _quote(text, 0)
        return Evaluation("failure", 0.3, "heuristic:left_after_complaint",
                          f"the user's last message complains ({quote!r}) and the user "
                          f"left")


class Complaint:
    """Failure when the user's next message complains about the answer."""

    name = "complaint"

    def evaluate(self, ctx: TaskContext) -> Evaluation | None:
        if ctx.next is None:
            return None
        quote = find_complaint(ctx.next.input)
        if quote is None:
            return None
        return Evaluation("failure", 0.15, "heuristic:complaint",
                          f"the user's next message complains: {quote!r}")


class Rephrase:
    """Failure when the user's next message asks the same thing again."""

    name = "rephrase"

    def evaluate(self, ctx: TaskContext) -> Evaluation | None:
        if ctx.next is None:
            return None
        why = find_rephrase(ctx.task.input, ctx.next.input)
        if why is None or find_thanks(ctx.next.input) is not None:
            return None
        return Evaluation("failure", 0.3, "heuristic:rephrase", why)


class Thanks:
    """Success when the user's next message thanks or approves (and does not complain)."""

    name = "thanks"

    def evaluate(self, ctx: TaskContext) -> Evaluation | None:
        if ctx.next is None:
            return None
        quote = find_thanks(ctx.next.input)
        if quote is None:
            return None
        return Evaluation("success", 0.9, "heuristic:thanks",
                          f"the user's next message thanks or approves: {quote!r}")


class Answered:
    """Weak success when the task has an output (no error, no refusal) and either the
    user's next message moves on to something else (no complaint or rephrase), or the
    session has ended after it (``TaskContext.session_ended``, no next message) and
    nothing says it failed: the output does not ask the user a question left unanswered,
    and the user's last message was not an insult nor a complaint that asked for nothing.
    No opinion otherwise."""

    name = "answered"

    def evaluate(self, ctx: TaskContext) -> Evaluation | None:
        output, following = ctx.task.output, ctx.next
        if output is None or not output.strip():
            return None
        if ctx.task.status == "error" or is_refusal(output):
            return None
        if following is None:
            return self._last(ctx, output)
        if find_complaint(following.input) or find_rephrase(ctx.task.input, following.input):
            return None
        return Evaluation("success", 0.6, "heuristic:answered",
                          "the task was answered and the user moved on to something else")

    @staticmethod
    def _last(ctx: TaskContext, output: str) -> Evaluation | None:
        if not ctx.session_ended:
            return None  # the user may still reply
        if "?" in output[-_ASKS_BACK_CHARS:]:
            return None  # a clarifying question or an offer the user never took up
        if _first_event(ctx, INSULT_EVENTS) is not None:
            return None  # an insult asks for nothing
        text = normalize(ctx.task.input)
        if "?" not in text and (_message(text).complaint is not None
                                or _first_event(ctx, FRUSTRATION_EVENTS) is not None):
            return None  # left after complaining (``LeftAfterComplaint``)
        return Evaluation("success", 0.6, "heuristic:answered",
                          "answered, and the user left without complaint")


def _first_event(ctx: TaskContext, names: Iterable[str]) -> str | None:
    """The first of ``names`` among the task's events, or None."""
    return next((n for n in names if n in ctx.events), None)


DEFAULT_EVALUATORS: tuple[Evaluator, ...] = (
    ErrorStatus(), NoOutput(), Refusal(), Repetition(), Complaint(), Rephrase(),
    LeftAfterComplaint(), Thanks(), Answered())
"""The built-in heuristics, in the pipeline's order (ties go to the first)."""

FACT_RULES = frozenset({"heuristic:error", "heuristic:no_output"})
"""Sources of verdicts that are facts, not guesses: they stand even against the judge."""


# --- combining -------------------------------------------------------------------------

def feedback_evaluation(flag: str, notes: str | None, what: str = "task") -> Evaluation:
    """The evaluation of user feedback ``flag`` (``success``/``failure``) on a ``what``."""
    success = flag == "success"
    reason = f"the user flagged the {what} as a {'success' if success else 'failure'}"
    if notes:
        reason += f": {notes.strip()[:200]!r}"
    return Evaluation("success" if success else "failure", 1.0 if success else 0.0,
                      SOURCE_FEEDBACK, reason)


def _with_others(winner: Evaluation, others: Sequence[Evaluation]) -> Evaluation:
    names = [o.source.removeprefix("heuristic:") for o in others if o is not winner]
    if not names:
        return winner
    return winner._replace(reason=f"{winner.reason} (other signals: {', '.join(names)})")


class EvaluationPipeline:
    """Runs evaluators over a task and combines their verdicts (see the module doc)."""

    def __init__(self, evaluators: Sequence[Evaluator] | None = None) -> None:
        self.evaluators: tuple[Evaluator, ...] = (
            DEFAULT_EVALUATORS if evaluators is None else tuple(evaluators))

    def evaluate(self, ctx: TaskContext, judge: Evaluation | None = None) -> Evaluation:
        """The task's evaluation; never None. ``judge`` is the LLM judge's verdict on it,
        when there is one."""
        if ctx.feedback is not None:
            return feedback_evaluation(ctx.feedback.flag, ctx.feedback.notes)
        verdicts = [v for v in (e.evaluate(ctx) for e in self.evaluators) if v is not None]
        failures = [v for v in verdicts if v.label == "failure"]
        facts = [v for v in failures if v.source in FACT_RULES]
        if facts:
            return _with_others(min(facts, key=lambda v: v.score), failures)
        if judge is not None and judge.label != "unknown":
            return judge
        if failures:
            return _with_others(min(failures, key=lambda v: v.score), failures)
        successes = [v for v in verdicts if v.label == "success"]
        if successes:
            return _with_others(max(successes, key=lambda v: v.score), successes)
        if judge is not None:
            return judge
        unknowns = [v for v in verdicts if v.label == "unknown"]
        if unknowns:
            return unknowns[0]
        if ctx.next is None and ctx.session_ended:
            return unknown("no signal either way: the user left after it")
        if ctx.next is None:
            return unknown("no signal yet: the user has not replied")
        return unknown("no signal either way")


# --- sessions --------------------------------------------------------------------------

def evaluate_session(tasks: Sequence[tuple[TaskRecord, Evaluation]],
                     feedback: SessionEventRecord | None = None) -> Evaluation:
    """A session's evaluation from its tasks' evaluations, and its feedback.

    Session feedback (a ``SessionEventRecord`` of kind ``feedback`` with a flag) wins.
    Otherwise the tasks with a verdict (``success`` or ``failure``) are averaged by score,
    the last of them (by start time) weighing as much as all the others together, because
    how a conversation ends says most about it; the label is ``success`` above 0.5,
    ``failure`` below, ``unknown`` at 0.5 or when no task has a verdict.
    """
    if feedback is not None and feedback.kind == "feedback" and \
            feedback.flag in ("success", "failure"):
        return feedback_evaluation(feedback.flag, feedback.notes, "session")
    if not tasks:
        return unknown("the session has no tasks", SOURCE_SESSION_TASKS)
    ordered = sorted(tasks, key=lambda pair: pair[0].start_ns)
    decided = [(i, e) for i, (_, e) in enumerate(ordered, 1) if e.label != "unknown"]
    n_success = sum(1 for _, e in decided if e.label == "success")
    n_failure = len(decided) - n_success
    counts = (f"{n_success} of {len(ordered)} task{'s' if len(ordered) != 1 else ''} "
              f"succeeded, {n_failure} failed, {len(ordered) - len(decided)} unknown")
    if not decided:
        return unknown(f"no task has a verdict ({len(ordered)} unknown)", SOURCE_SESSION_TASKS)
    last_position, last = decided[-1]
    others = [e.score for _, e in decided[:-1]]
    score = last.score if not others else 0.5 * last.score + 0.5 * sum(others) / len(others)
    score = round(score, 4)
    label = "success" if score > 0.5 else "failure" if score < 0.5 else "unknown"
    verb = "succeeded" if last.label == "success" else "failed"
    is_last = last_position == len(ordered)
    which = "the last task" if is_last else f"the last evaluated task (#{last_position})"
    return Evaluation(label, score, SOURCE_SESSION_TASKS,
                      f"{counts}; {which} {verb}: {last.reason}")
