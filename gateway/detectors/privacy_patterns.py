"""The privacy detector's kinds and patterns (gateway.detectors.privacy runs them).

Every pattern starts with a negative look-behind on its own character class, so a search tries
each run of candidate characters once instead of from every position inside it.
"""

from __future__ import annotations

import re

EMAIL = "email"
PHONE = "phone"
PAYMENT_CARD = "payment_card"
IBAN = "iban"
US_SSN = "us_ssn"
IP_ADDRESS = "ip_address"
AWS_ACCESS_KEY = "aws_access_key"
OPENAI_KEY = "openai_key"
GITHUB_TOKEN = "github_token"
SLACK_TOKEN = "slack_token"
PRIVATE_KEY = "private_key"
JWT = "jwt"

PERSONAL_KINDS = frozenset({EMAIL, PHONE, PAYMENT_CARD, IBAN, US_SSN, IP_ADDRESS})
SECRET_KINDS = frozenset({AWS_ACCESS_KEY, OPENAI_KEY, GITHUB_TOKEN, SLACK_TOKEN, PRIVATE_KEY, JWT})
BUILTIN_KINDS = PERSONAL_KINDS | SECRET_KINDS
TENANT_KIND_PREFIX = "tenant:"

EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
CARD_RE = re.compile(
    r"(?<![\d.,-])[2-6](?:\d{3}([ -]?)\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?"
    r"|\d{3}([ -]?)\d{6}\2\d{4,5})(?![\d-]|[.,]\d)"
)
IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,32}(?![a-z0-9])")
SSN_RE = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
SSN_CONTEXT_RE = re.compile(
    r"(?i:\b(?:ssn|social security(?: number| no\.?)?))\W{0,5}(?:is\W{1,3})?(\d{9})(?!\d)"
)
INTL_PHONE_RE = re.compile(
    r"(?<![\w+])\+(?:[1-9]\d{7,14}"
    r"|[1-9]\d{0,3}(?:[ .-]?\(\d{1,4}\)[ .-]?\d{1,8}|[ .-]\d{1,8}){1,6})(?![\w]|[.-]\d)"
)
NANP_PHONE_RE = re.compile(
    r"(?<![\w+.-])(?:1[ .-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}"
    r"(?![\w-]|\.\d)"
)
CONTEXT_PHONE_RE = re.compile(
    r"(?i:\b(?:phone|telephone|tel|mobile|cell|fax|whatsapp|call(?: me)?(?: at| on)?)\b)"
    r"(?i:\s*(?:no\.?|number|nr\.?|#))?[:.\s-]{0,3}(\+?\(?\d[\d ().-]{5,18}\d)(?![\w-]|\.\d)"
)
IPV4_RE = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\w]|\.\d)"
)
VERSION_BEFORE_RE = re.compile(
    r"(?i:\b(?:version|ver|release|build|firmware|driver|kernel)\s*[:#]?\s*|[=~<>!]=\s*|@)$"
)
IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?"
    r"(?![\w:])"
)
SECRET_RES: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    # (kind, literal-led finder that the engine searches at C speed, full pattern)
    (AWS_ACCESS_KEY, re.compile(r"A(?:KIA|SIA)"),
     re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")),
    (OPENAI_KEY, re.compile(r"sk-"), re.compile(
        r"(?<![\w-])sk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_-]{0,80}\d)[A-Za-z0-9_-]{20,}"
    )),
    (GITHUB_TOKEN, re.compile(r"gh[pousr]_|github_pat_"), re.compile(
        r"(?<![\w])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,251})(?![\w])"
    )),
    (SLACK_TOKEN, re.compile(r"xox[abposr]-"),
     re.compile(r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,}")),
    (PRIVATE_KEY, re.compile(r"-----BEGIN "),
     re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----")),
)  # fmt: skip
# Scanned after the other secrets, from its "J": a capital J is rare in prose and code, and
# str.find of one character runs at memchr speed, ~30x a search for "eyJ" (~1 ns a character).
JWT_RE = re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*")
TENANT_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


PHONE_WORDS = ("phone", "tel", "mobile", "cell", "fax", "whatsapp", "call")
# First to last digit of a run of digits, " ().-" and non-ASCII ("?"); 7 characters at least.
NUMBER_RUN_RE = re.compile(rb"0[0 ().?-]{5,}0")
# A keyword's match ends within 60 characters of its start and the number has 7 digits, so the
# keyword starts at most 53 characters before the number's first digit; 64 leaves room.
KEYWORD_REACH = 64
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
LOCAL_PART_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
HEX_COLON = HEX_DIGITS | {":"}
COLON_PAIR_RE = re.compile(r":(?=[0-9A-Fa-f]{0,4}(:))")
