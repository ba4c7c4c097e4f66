"""Small helpers shared by several tokenizer kinds."""
from __future__ import annotations

import heapq
import re


# Control-token texts that end a sequence or a turn in common formats; llama.cpp also stops on these.
END_OF_TURN_TEXTS = frozenset({
    "</s>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>",
    "<end_of_turn>", "<EOT>", "<｜end▁of▁sentence｜>"})


def merge_by_score(pieces: list[str], score_of: dict[str, float]) -> list[str]:
    """SentencePiece-style BPE: repeatedly merge the adjacent pair whose concatenation is a vocabulary
    piece with the highest score (ties: the leftmost pair) until no pair is in the vocabulary.

    This is the algorithm of llama2.c's encoder and of llama.cpp's SPM tokenizer; a heap keyed on
    (-score, left position) picks the same pair each round as their linear scans, in O(n log n)."""
    count = len(pieces)
    if count < 2:
        return list(pieces)
    text: list[str | None] = list(pieces)
    prev_index = list(range(-1, count - 1))
    next_index = list(range(1, count + 1))
    next_index[-1] = -1
    candidates: list[tuple[float, int, int, str]] = []

    def consider(left: int, right: int) -> None:
        merged = text[left] + text[right]
        score = score_of.get(merged)
        if score is not None:
            heapq.heappush(candidates, (-score, left, right, merged))

    for left in range(count - 1):
        consider(left, left + 1)

    while candidates:
        _, left, right, merged = heapq.heappop(candidates)
        left_text, right_text = text[left], text[right]
        # Symbols only grow, so a changed length or neighbour means this candidate is stale.
        if (left_text is None or right_text is None or next_index[left] != right
                or len(left_text) + len(right_text) != len(merged)):
            continue
        text[left] = merged
        text[right] = None
        after = next_index[right]
        next_index[left] = after
        if after != -1:
            prev_index[after] = left
        if prev_index[left] != -1:
            consider(prev_index[left], left)
        if after != -1:
            consider(left, after)
    return [piece for piece in text if piece is not None]


class SpecialTokenSplitter:
    """Cuts text around occurrences of given token strings (longest first), e.g. '<|im_start|>'."""

    def __init__(self, token_ids: dict[str, int]):
        self.token_ids = {text: token_id for text, token_id in token_ids.items() if text}
        if self.token_ids:
            alternatives = sorted(self.token_ids, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(text) for text in alternatives))
        else:
            self.pattern = None

    def split(self, text: str) -> list[str | int]:
        """Pieces of text in order: plain strings, and ids where a token string occurs."""
        if self.pattern is None:
            return [text] if text else []
        parts: list[str | int] = []
        position = 0
        for match in self.pattern.finditer(text):
            if match.start() > position:
                parts.append(text[position:match.start()])
            parts.append(self.token_ids[match.group()])
            position = match.end()
        if position < len(text):
            parts.append(text[position:])
        return parts


def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte-level mapping: each byte to a printable character (printable Latin-1 bytes map to
    themselves, the others to code points from U+0100 upwards, in byte order)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    mapping = {byte: chr(byte) for byte in printable}
    next_code_point = 0x100
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(next_code_point)
            next_code_point += 1
    return mapping
