"""Tokenisation with dynamic padding (each batch padded to its own longest text)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


def encode_pairs(
    tok, queries: Sequence[str], docs: Sequence[str], max_length: int
) -> dict[str, torch.Tensor]:
    return dict(
        tok(
            list(queries),
            list(docs),
            truncation="longest_first",
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
    )


def encode_texts(tok, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    return dict(
        tok(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    )


class LazyBatches(Sequence):
    """An epoch's batches as index arrays, tokenised only when the loop reaches them."""

    def __init__(self, indices: list[np.ndarray], make: Callable[[np.ndarray], dict]) -> None:
        self.indices = indices
        self.make = make

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.make(self.indices[i])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def bucketed_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, *, pool: int = 50
) -> list[np.ndarray]:
    """A seeded epoch of batches whose members have similar lengths.

    Shuffles, sorts each window of ``pool`` batches by length, cuts it into batches and
    shuffles the batches, so each batch is padded to a length close to its members' own
    instead of the epoch's longest (dynamic padding then roughly halves the tokens for
    query + title pairs) while the order stays random from batch to batch."""
    rng = np.random.default_rng([seed, epoch, 1])
    order = rng.permutation(len(lengths))
    window = batch_size * pool
    out: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [out[i] for i in rng.permutation(len(out))]


@torch.no_grad()
def run_by_length(
    keys: Sequence[str],
    batch_size: int,
    encode: Callable[[np.ndarray], dict[str, torch.Tensor]],
    fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    device: torch.device,
    *,
    empty_shape: tuple[int, ...] = (0,),
    progress: str | None = None,
) -> np.ndarray:
    """Inference over many inputs in batches of similar length (little padding).

    ``keys`` (one text per input) fix the order; ``encode(indices)`` tokenises a batch and
    ``fn`` maps it to one output row per input. Rows come back in input order."""
    order = length_sorted(keys)
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=progress, leave=False, dynamic_ncols=True)
    out = None
    for i in starts:
        ix = order[i : i + batch_size]
        y = fn({k: v.to(device) for k, v in encode(ix).items()}).float().cpu().numpy()
        if out is None:
            out = np.empty((len(order), *y.shape[1:]), dtype=np.float32)
        out[ix] = y
    return out if out is not None else np.empty(empty_shape, dtype=np.float32)


def length_sorted(texts: Sequence[str]) -> np.ndarray:
    """Indices ordering texts by length, so batches of similar length pad little."""
    return np.argsort([len(t) for t in texts], kind="stable")
