"""Shards of corpus files: the lines that begin in a range of byte offsets of a file,
read and tokenized where they are (``tokenizer.read_range``), so that several processes,
on one machine (``firstpass.py``) or on a Dask cluster (``cluster.py``), each read a part
of the same corpus. Cut a file at any offsets and the shards hold each of its lines once;
a line that cannot be decoded is named by its line number in the file, as when the file
is read whole.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, List, Optional, Sequence, Tuple

from rnnlm_cli.errors import CorpusError
from rnnlm_cli.tokenizer import Tokenizer, TokenizerConfig, read_range, split_lines


@dataclass(frozen=True)
class Shard:
    """The lines of a corpus file that begin at a byte offset in ``[start, end)``."""

    path: str          # where the process that reads it opens it (absolute for a cluster)
    start: int
    end: int


def halves(paths: Sequence[str], sizes: Sequence[int]) -> Tuple[List[Shard], List[Shard]]:
    """The files, one after another, cut into two runs of shards of about the same bytes
    (the file the middle falls in is cut there)."""
    middle, before = sum(sizes) // 2, 0
    first: List[Shard] = []
    second: List[Shard] = []
    for path, size in zip(paths, sizes):
        cut = min(size, max(0, middle - before))
        if cut > 0:
            first.append(Shard(path, 0, cut))
        if cut < size:
            second.append(Shard(path, cut, size))
        before += size
    return first, second


def shard_blocks(shard: Shard, tokenizer: dict, encoding_errors: str,
                 block_bytes: Optional[int] = None) -> Iterator[Tuple[List[List[str]], int]]:
    """The tokenized sentences of a shard a block at a time, each with the block's size in
    bytes (``tokenizer``: ``TokenizerConfig.to_dict()``)."""
    tokenize = Tokenizer(TokenizerConfig.from_dict(tokenizer)).tokenize_lines
    for block in read_range(shard.path, shard.start, shard.end, encoding_errors, block_bytes):
        yield tokenize(split_lines(_text(block, shard))), len(block.data)


def _text(block, shard: Shard) -> str:
    """The block decoded; undecodable, a ``CorpusError`` naming the line in the file (the
    block's lines are numbered from the shard's first: count the lines before it)."""
    try:
        return block.text()
    except CorpusError:
        before = _lines_before(shard)
        return replace(block, first_line=block.first_line + before).text()


def _lines_before(shard: Shard) -> int:
    """The lines of the file before the shard's first line."""
    newlines, position = 0, 0
    with open(shard.path, "rb") as file:
        while position < shard.start:
            data = file.read(min(1 << 20, shard.start - position))
            if not data:
                break
            newlines += data.count(b"\n")
            position += len(data)
        begins_here = shard.start == 0 or data.endswith(b"\n")
    return newlines + (0 if begins_here else 1)
