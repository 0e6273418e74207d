"""Tokenisation with dynamic padding (each batch padded to its own longest text)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

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


def chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


@torch.no_grad()
def predict(
    fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    encode: Callable[[slice], dict],
    n: int,
    batch_size: int = 64,
    device: torch.device | None = None,
    progress: str | None = None,
) -> torch.Tensor:
    """Run ``fn`` over ``n`` inputs in batches sorted by length-independent order; returns
    the concatenated outputs on CPU."""
    outs = []
    it = chunks(n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(list(it), desc=progress, leave=False, dynamic_ncols=True)
    for sl in it:
        b = encode(sl)
        if device is not None:
            b = {k: v.to(device) for k, v in b.items()}
        outs.append(fn(b).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def length_sorted(texts: Sequence[str]) -> np.ndarray:
    """Indices ordering texts by length, so batches of similar length pad little."""
    return np.argsort([len(t) for t in texts], kind="stable")
