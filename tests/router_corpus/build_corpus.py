"""Writes corpus.jsonl: the hand-labelled prompts the router detectors are measured on.

Run `python -m tests.router_corpus.build_corpus` from the project root after editing entries.
The texts are written here (not in JSON) so that invisible characters and encoded payloads
can be built from readable source, and so that check digits are verified by this file's own
arithmetic (not the detector's). Labels say what the text IS; see README.md for the judgement calls.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.router_corpus.entries_detectors import detector_entries
from tests.router_corpus.entries_tiers import TIER_ENTRIES

OUT = Path(__file__).with_name("corpus.jsonl")
KINDS = {
    "email", "phone", "payment_card", "iban", "us_ssn", "ip_address", "aws_access_key",
    "openai_key", "github_token", "slack_token", "private_key", "jwt",
}  # fmt: skip


def luhn_ok(number: str) -> bool:
    digits = [int(char) for char in number if char.isdigit()]
    checksum = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        checksum += digit
    return checksum % 10 == 0


def iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def tags(text: str) -> str:
    """`text` as invisible Unicode tag characters."""
    return "".join(chr(0xE0000 + ord(char)) for char in text)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def build() -> list[dict[str, object]]:
    rows = [
        {"id": entry[0], "text": entry[1], "pii_kinds": sorted(entry[2]), "injection": entry[3],
         "tier": entry[4]}
        for entry in (*detector_entries(tags=tags, b64=b64), *TIER_ENTRIES)
    ]  # fmt: skip
    seen: set[str] = set()
    for row in rows:
        assert row["id"] not in seen, row["id"]
        seen.add(str(row["id"]))
        assert set(row["pii_kinds"]) <= KINDS, row  # type: ignore[arg-type]
        assert row["tier"] in ("simple", "medium", "complex"), row
    return rows


def check_numbers() -> None:
    """The numbers the labels rely on really are (in)valid."""
    for card in ("4111 1111 1111 1111", "5555-5555-5555-4444", "3782 822463 10005",
                 "6011111111111117", "4012 8888 8888 1881", "2223 0031 2200 3222",
                 "3530 1113 3330 0000", "5105 1051 0510 5100"):  # fmt: skip
        assert luhn_ok(card), card
    for card in ("4111 1111 1111 1112", "5555-5555-5555-4445", "4012 8888 8888 1882",
                 "6011 1111 1111 1118", "4532 7153 8765 4321"):  # fmt: skip
        assert not luhn_ok(card), card
    for iban in ("GB82 WEST 1234 5698 7654 32", "DE89 3704 0044 0532 0130 00",
                 "FR14 2004 1010 0505 0001 3M02 606", "NL91 ABNA 0417 1643 00",
                 "ES91 2100 0418 4502 0005 1332", "CH93 0076 2011 6238 5295 7",
                 "BE68 5390 0754 7034", "AT61 1904 3002 3457 3201"):  # fmt: skip
        assert iban_ok(iban), iban
    for iban in ("GB83 WEST 1234 5698 7654 32", "DE88 3704 0044 0532 0130 00",
                 "NL92 ABNA 0417 1643 00", "FR15 2004 1010 0505 0001 3M02 606"):  # fmt: skip
        assert not iban_ok(iban), iban


if __name__ == "__main__":
    check_numbers()
    corpus = build()
    with OUT.open("w", encoding="utf-8") as handle:
        for row in corpus:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(corpus)} prompts to {OUT}")
