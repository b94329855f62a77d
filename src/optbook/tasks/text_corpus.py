r"""A character-level text corpus that every reader already has: Python's own standard library.

The chapter on Adafactor in practice trains a small language model, and it
needs text that ships with the environment (no downloads at run time), is the
same on every machine with the same Python, and is large enough that a few
hundred training steps never see the same window twice. The ``.py`` files of
the running interpreter's standard library (``sysconfig.get_paths()["stdlib"]``)
fit: a few megabytes of real, structured text.

What is read, and how it is split
---------------------------------
* Only the top-level ``*.py`` files of the stdlib directory (no packages, no
  test suites), in sorted file-name order, whole files only, until
  ``max_chars`` characters have been taken. The subset is therefore fixed for
  a given Python version; a different patch release may change some files, and
  with them every number computed from the corpus.
* Every file is split at a line boundary: its first ``1 - val_fraction`` of
  characters go to training, the rest to validation. All files are seen in
  both parts, the parts are stored separately, and so no validation window
  overlaps a training window.
* The vocabulary is the sorted set of characters of the *training* text, with
  index 0 reserved for characters that occur only in validation.

Batches are windows of ``context + 1`` consecutive characters at uniformly
random offsets drawn from a seeded :class:`torch.Generator`: input ``x`` is the
first ``context`` characters, target ``y`` the same window shifted by one.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "UNKNOWN",
    "CharVocab",
    "Corpus",
    "stdlib_dir",
    "stdlib_files",
    "load_stdlib_corpus",
    "sample_batch",
    "batches",
    "fixed_batches",
]
# None of these computes a book symbol: they read, encode and sample text.
__helpers__ = tuple(name for name in __all__ if name[0].islower())

#: The symbol that stands for any character the training text does not contain.
UNKNOWN = "\x00"


def stdlib_dir() -> Path:
    """The running interpreter's standard-library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | str | None = None) -> list[Path]:
    """Top-level ``*.py`` files of ``root`` (default: the stdlib), sorted by file name."""
    root = stdlib_dir() if root is None else Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root={str(root)!r} is not a directory; pass the standard-library directory.")
    return sorted((p for p in root.glob("*.py") if p.is_file()), key=lambda p: p.name)


@dataclass(frozen=True)
class CharVocab:
    """A character vocabulary: ``chars[i]`` is the character with index ``i``.

    ``chars[0]`` is :data:`UNKNOWN`, the index every character outside the
    vocabulary maps to.
    """

    chars: str

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        """The sorted set of characters of ``text``, after the reserved unknown character."""
        return cls(UNKNOWN + "".join(sorted(set(text) - {UNKNOWN})))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Indices (int64) of the characters of ``text``; unknown characters give 0."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        known = np.frombuffer(self.chars.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        table = np.zeros(int(max(known.max(), codes.max(initial=0))) + 1, dtype=np.int64)
        table[known] = np.arange(len(known))
        return table[codes]

    def decode(self, ids) -> str:
        """The text whose indices are ``ids`` (a sequence, array or tensor of ints)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.chars)):
            raise ValueError(f"ids must lie in [0, {len(self.chars)}), got values in [{ids.min()}, {ids.max()}].")
        return "".join(self.chars[i] for i in ids)


@dataclass(frozen=True)
class Corpus:
    """Encoded training and validation text, and where it came from."""

    vocab: CharVocab
    train: torch.Tensor  # int64 indices
    val: torch.Tensor
    files: tuple[str, ...]  # file names, in reading order

    @property
    def n_chars(self) -> int:
        """Characters in training plus validation text."""
        return len(self.train) + len(self.val)

    def summary(self) -> dict:
        """Plain numbers describing the corpus, for printing in a chapter."""
        return {
            "files": len(self.files),
            "train_chars": len(self.train),
            "val_chars": len(self.val),
            "vocab_size": len(self.vocab),
            "val_unknown_chars": int((self.val == 0).sum()),
        }


def _split_at_line(text: str, val_fraction: float) -> tuple[str, str]:
    """Split ``text`` at the first line break at or after ``(1 - val_fraction) * len(text)``."""
    cut = text.find("\n", int(round((1.0 - val_fraction) * len(text))))
    cut = len(text) if cut < 0 else cut + 1
    return text[:cut], text[cut:]


def load_stdlib_corpus(
    max_chars: int = 1_000_000, *, val_fraction: float = 0.1, root: Path | str | None = None
) -> Corpus:
    """Read whole stdlib files in sorted order until ``max_chars`` characters are taken.

    The file that would overshoot ``max_chars`` and all later ones are left out,
    so the corpus is a set of complete files. Each file contributes its first
    ``1 - val_fraction`` (cut at a line break) to training and the rest to
    validation.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}.")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}.")
    train_parts: list[str] = []
    val_parts: list[str] = []
    names: list[str] = []
    total = 0
    for path in stdlib_files(root):
        text = path.read_text(encoding="utf-8")
        if total + len(text) > max_chars:
            break
        total += len(text)
        head, tail = _split_at_line(text, val_fraction)
        train_parts.append(head)
        val_parts.append(tail)
        names.append(path.name)
    train_text, val_text = "".join(train_parts), "".join(val_parts)
    if not train_text or not val_text:
        raise ValueError(
            f"max_chars={max_chars} yields {len(train_text)} training and {len(val_text)} validation characters "
            f"from {len(names)} files; raise max_chars so that both are non-empty."
        )
    vocab = CharVocab.from_text(train_text)
    return Corpus(
        vocab=vocab,
        train=torch.from_numpy(vocab.encode(train_text)),
        val=torch.from_numpy(vocab.encode(val_text)),
        files=tuple(names),
    )


def sample_batch(
    ids: torch.Tensor, batch_size: int, context: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of ``batch_size`` windows: inputs ``x`` and next-character targets ``y``.

    Both have shape ``(batch_size, context)``; ``y[:, k] = x[:, k + 1]`` except at
    the last position, whose target is the character after the window.
    """
    if batch_size < 1 or context < 1:
        raise ValueError(f"batch_size and context must be >= 1, got {batch_size} and {context}.")
    if len(ids) < context + 1:
        raise ValueError(f"the text has {len(ids)} characters, fewer than context + 1 = {context + 1}.")
    starts = torch.randint(0, len(ids) - context, (batch_size,), generator=generator)
    offsets = torch.arange(context + 1)
    windows = ids[starts[:, None] + offsets]
    return windows[:, :-1], windows[:, 1:]


def batches(ids: torch.Tensor, batch_size: int, context: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless stream of batches from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield sample_batch(ids, batch_size, context, generator)


def fixed_batches(
    ids: torch.Tensor, n_batches: int, batch_size: int, context: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n_batches`` batches drawn once: the same evaluation set for every run."""
    stream = batches(ids, batch_size, context, seed)
    return [next(stream) for _ in range(n_batches)]
