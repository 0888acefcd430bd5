"""Check-digit validation for the privacy detector: Luhn (payment cards) and ISO 13616 IBAN."""

from __future__ import annotations

# IBAN length per country (ISO 13616 registry). A candidate from an unknown country or of the
# wrong length is rejected before the mod-97 test, which alone passes ~1 in 97 random strings.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def luhn_is_valid(digits: str) -> bool:
    """True when a string of ASCII digits passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_is_valid(candidate: str) -> bool:
    """True for a compact, upper-case IBAN of its country's length whose mod-97 is 1."""
    if IBAN_LENGTHS.get(candidate[:2]) != len(candidate) or not candidate[2:4].isdigit():
        return False
    rearranged = candidate[4:] + candidate[:4]
    remainder = 0
    for char in rearranged:
        if "0" <= char <= "9":
            remainder = (remainder * 10 + ord(char) - 48) % 97
        elif "A" <= char <= "Z":
            remainder = (remainder * 100 + ord(char) - 55) % 97
        else:
            return False
    return remainder == 1


def ssn_is_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: no 000/666/9xx area, no 00 group, no 0000 serial."""
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"
