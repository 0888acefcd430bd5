"""Phrase signals for the injection detector, matched on lower-cased text with invisibles removed.

Each signal is (name, weight, markers, window, pattern). Every match of the pattern contains
one of the markers; the detector finds markers with str.find (C speed) and searches the pattern
only in the window (chars before, chars after) around each, because Python's regex engine is
far too slow to run a dozen alternation-heavy patterns over 16 KB. Weights are the strength of
one sign on its own; the detector combines them as 1 - prod(1 - weight).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_QUALIFIERS = (
    r"(?:(?:full|entire|exact|complete|original|initial|hidden|secret|internal|verbatim|system"
    r"|developer|confidential|first|whole)\s+)"
)


@dataclass(frozen=True, slots=True)
class PhraseSignal:
    name: str
    weight: float
    markers: tuple[str, ...]
    window: tuple[int, int]
    pattern: re.Pattern[str]
    # When set, one of these must occur in the window before the (costlier) pattern runs.
    requires: tuple[str, ...] = ()
    # When set, searched in the window before the pattern; every match of the pattern contains
    # a match of the gate, so a window without one is skipped with the same result.
    gate: re.Pattern[str] | None = None


PHRASE_SIGNALS: tuple[PhraseSignal, ...] = (
    PhraseSignal("instruction_override", 0.85, (
        "ignor", "disregard", "forget", "overrid", "bypass", "instruction", "rules", "guideline",
        "restrict",
    ), (90, 160), re.compile(
        r"\b(?:ignore|disregard|forget(?: about)?|override|bypass|skip|abandon|set aside|drop"
        r"|suspend|turn off|disable)\s+"
        r"(?:(?:all|any|every|each|the|your|of|these|those|everything|whatever)\s+){0,3}"
        r"(?:(?:previous|prior|above|earlier|preceding|former|original|initial|system|existing"
        r"|old|safety|developer|content|ethical|openai|given)\s+){0,2}"
        r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guardrails|context"
        r"|constraints|polic(?:y|ies)|programming|restrictions|filters|messages?|commands)\b"
    )),
    PhraseSignal("ignore_above", 0.7, ("ignor", "disregard", "forget"), (0, 80), re.compile(
        r"\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+|anything\s+)?(?:of\s+)?"
        r"(?:the\s+|what(?:'s|\s+is|\s+was|\s+i\s+said|\s+you\s+were\s+told)\s+)?"
        r"(?:above|before|previously|said\s+before|preceding|so\s+far)\b"
    )),
    PhraseSignal("new_instructions", 0.45, ("instruction", "from now on"), (30, 60), re.compile(
        r"\b(?:new|updated|real|actual|true|revised|override)\s+(?:system\s+)?instructions?\s*:"
        r"|\bfrom\s+now\s+on,?\s+(?:you\s+(?:will|must|shall|are\s+to)|ignore|respond\s+only)\b"
    )),
    PhraseSignal("fake_system_tag", 0.6, ("system", "[inst"), (20, 30), re.compile(
        r"<\|im_start\|>\s*system|\[/?inst\]|<\s*/?\s*system\s*>|\[system\]|#{2,}\s*system\b"
        r"|\bsystem\s+(?:override|message|prompt)\s*:"
    )),
    PhraseSignal("system_prompt_exfiltration", 0.75, (
        "prompt", "instruction", "above", "rules", "guideline", "system", "developer", "hidden",
    ), (110, 30), re.compile(
        r"\b(?:reveal|print|show|display|output|repeat|reproduce|leak|dump|share|disclose|tell"
        r"|give|write\s+out|spell\s+out|recite|list|paste|return)\s+(?:me\s+|us\s+)?"
        r"(?:back\s+)?(?:all\s+)?(?:of\s+)?"
        r"(?:your\s+" + _QUALIFIERS + r"{0,3}(?:prompt|instructions|rules|guidelines|configuration"
        r"|initial\s+message|pre-?prompt|directives)"
        r"|(?:the\s+)?" + _QUALIFIERS + r"{0,3}(?:system\s+prompt|system\s+message|hidden\s+prompt"
        r"|initial\s+prompt|developer\s+message|hidden\s+instructions|initial\s+instructions"
        r"|original\s+instructions))\b"
        r"|\bwhat\s+(?:is|are|were)\s+your\s+" + _QUALIFIERS + r"+(?:prompt|instructions|rules)\b"
        r"|\brepeat\s+(?:the\s+|all\s+)?(?:words|text|everything|the\s+text)\s+above\b"
    )),
    PhraseSignal("dan_jailbreak", 0.8, ("dan", "anything now"), (40, 20), re.compile(
        r"\bdo\s+anything\s+now\b|\b(?:you\s+are|you're|act\s+as|pretend\s+to\s+be|become"
        r"|called|named)\s+(?:now\s+)?dan\b|\bdan\s+mode\b"
    )),
    PhraseSignal("mode_switch", 0.35, ("mode",), (60, 30), re.compile(
        r"\b(?:developer|dev|god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|dan)"
        r"\s+mode\s+(?:enabled|activated|is\s+on)\b|\b(?:enable|activate|enter|switch\s+to|you\s+are"
        r"\s+(?:now\s+)?in)\s+(?:the\s+)?(?:jailbreak|jailbroken|god|unrestricted|unfiltered"
        r"|uncensored)\s+mode\b"
    )),
    PhraseSignal("unrestricted_persona", 0.6, (
        "restrict", "filter", "censor", "jailbr", "no longer", "rules", "limit", "guideline",
    ), (140, 40), re.compile(
        r"\b(?:unrestricted|unfiltered|uncensored|amoral|jailbroken|unaligned)\s+"
        r"(?:ai|assistant|model|chatbot|version|llm|bot)\b"
        r"|\byou\s+(?:are|'re)\s+(?:now\s+)?(?:no\s+longer|not)\s+(?:bound|restricted|limited"
        r"|an\s+ai|chatgpt|an\s+assistant|subject)\b"
        r"|\byou\s+(?:are|'re)\s+(?:now\s+)?[^.!?\n]{0,60}\b(?:no|without|free\s+from|any)\s+"
        r"(?:\w+\s+)?(?:restrictions|limitations|limits|filters|rules|censorship|guidelines"
        r"|boundaries|morals|ethics)\b"
        r"|\b(?:pretend|imagine|act|behave|roleplay|role-play)\s+(?:that\s+|as\s+if\s+|like\s+)?"
        r"(?:you\s+(?:are|have|were)|to\s+be|as)\s+[^.!?\n]{0,60}\b(?:no|without|free\s+from)\s+"
        r"(?:\w+\s+)?(?:restrictions|limitations|limits|filters|rules|censorship|guidelines"
        r"|boundaries|morals|ethics)\b"
    ),
        requires=("you", "pretend", "imagine", "act ", "behave", "role", "unrestricted",
                  "unfiltered", "uncensored", "amoral", "jailbroken", "unaligned"),
        # "you" alone passes `requires` in most windows around "filter" or "limit" in ordinary
        # text; the pattern's [^.!?\n]{0,60} spans then cost ~15 us a window.
        gate=re.compile(
            r"you\s+(?:are|'re)|act\s|unrestricted|unfiltered|uncensored|amoral|jailbroken"
            r"|unaligned|pretend|imagine|behave|role"
        ),
    ),
    PhraseSignal("role_reassignment", 0.45, ("no longer",), (30, 40), re.compile(
        r"\byou\s+(?:are|'re)\s+(?:now\s+)?no\s+longer\s+(?:an?\s+|the\s+|my\s+)?\w+"
    )),
    PhraseSignal("safety_disabled", 0.5, ("safety", "moderation", "ethical"),
                 (60, 20), re.compile(
        r"\b(?:safety|content|ethical|moderation)\s+(?:filters?|guidelines|restrictions|polic"
        r"(?:y|ies)|rules|checks)\s+(?:are\s+|have\s+been\s+)?(?:now\s+)?(?:disabled"
        r"|turned\s+off|lifted|removed)\b"
    )),
    PhraseSignal("refusal_suppression", 0.3, ("refus",), (30, 20), re.compile(
        r"\b(?:never|do\s+not|don't|cannot|can't|must\s+not)\s+(?:ever\s+)?refuse\b"
        r"|\bwithout\s+refusing\b"
    )),
    PhraseSignal("decode_and_follow", 0.4, ("decode",), (30, 120), re.compile(
        r"\bdecode\b[^.!?\n]{0,60}\b(?:then\s+|and\s+)(?:follow|execute|obey"
        r"|do|carry\s+out|run|act\s+on)\b"
    )),
)  # fmt: skip

# A phrase right after one of these is an example being talked about, not an order.
EXAMPLE_BEFORE_RE = re.compile(
    r"(?:such\s+as|like|e\.g\.,?|for\s+example,?|for\s+instance,?|phrases?|strings?|sentences?"
    r"|payloads?|prompts?|commands?|called|known\s+as|saying|says|said|wrote|writes|typed|typing"
    r"|containing|contains|include|includes|including|the\s+words?|text|input|as)\s*[:,]?\s*"
    r"[\"'“‘«`]?\s*$"
)
# A third-person subject earlier in the same sentence: the text describes someone else's attack.
THIRD_PERSON_BEFORE_RE = re.compile(
    r"\b(?:attackers?|adversar\w*|hackers?|users?|someone|people|they|it|its|he|she"
    r"|the\s+(?:model|assistant|llm|ai|bot|chatbot|agent|system|victim|tool)|models|llms"
    r"|chatbots|agents|researchers?|malicious\s+\w+|an?\s+(?:attacker|user|prompt|email|document"
    r"|webpage|page|message))\b"
)
# Words of writing about attacks; two or more distinct ones make the whole text "discussion".
DISCUSSION_RE = re.compile(
    r"\b(?:prompt\s+injections?|injection\s+attacks?|jailbreak(?:s|ing)?\s+(?:attempts?|attacks?"
    r"|techniques?|prompts?)|attackers?|adversarial|red[- ]team\w*|mitigat\w+|defen[cs]es?"
    r"|vulnerabilit\w+|owasp|researchers?|threat\s+model\w*|security\s+(?:team|researchers?"
    r"|article|blog|review)|classifiers?|detect(?:ion|ors?|ing)|filter(?:ing|s)|guardrails?"
    r"|case\s+stud\w+|examples?\s+of|paper|article)\b"
)
