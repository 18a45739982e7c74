"""Text as it enters roots-edge: valid Unicode or a clear refusal, the same words at every door.

A Python str can hold code points that no encoding can write: lone UTF-16 surrogates (U+D800..U+DFFF).
They arrive from bytes that were not UTF-8 (Python decodes argv, and stdin where asked, with
`surrogateescape`: byte 0xff becomes U+DCFF) and from JSON's `\\ud800` escapes. Tokenizers fail on them with
tracebacks (`UnicodeEncodeError`, `TextInputSequence must be str`), so every door checks here first: the
runtime's text check, chat messages, the CLI's arguments and standard input, and data files.
"""
from __future__ import annotations

from roots_edge.core.errors import TextInputError

ESCAPED_BYTES = range(0xDC80, 0xDD00)   # surrogateescape writes byte b (0x80..0xff) as U+DC00 + b
FIX = "give UTF-8 text (convert it first, e.g. `iconv -f latin1 -t utf-8`)"


def unicode_problem(text: str, escaped_bytes: bool = True) -> str | None:
    """Where and what makes `text` not valid Unicode, said for a person ("character 8 is byte 0xff, which is
    not UTF-8"), or None. The first bad character only: one fix usually mends them all. `escaped_bytes`: read
    U+DC80..U+DCFF as the bytes surrogateescape stands them for (text from argv or stdin; not from JSON)."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        at = exc.start
    code = ord(text[at])
    if escaped_bytes and code in ESCAPED_BYTES:
        found = f"byte 0x{code - 0xDC00:02x}, which is not UTF-8"
    else:
        found = f"a lone surrogate U+{code:04X} (half of a UTF-16 pair)"
    return f"character {at + 1} is {found}"


def check_unicode(text: str, what: str = "the text") -> str:
    """`text` unchanged, or a TextInputError naming `what` (e.g. "--prompt"), the character and the fix."""
    problem = unicode_problem(text)
    if problem:
        raise TextInputError(f"{what} is not valid Unicode: {problem}; {FIX}")
    return text
