"""Bounded-memory duplicate detection over a stream of 64-bit row hashes.

Seen hashes live in a few sorted numpy arrays merged like a binary counter (a tiny LSM
tree): 8 bytes per distinct row, O(log n) sorted levels, no Python objects per row.
"""

from __future__ import annotations

import numpy as np


class SeenHashes:
    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(x) for x in self.levels)

    def seen_before(self, hashes: np.ndarray) -> np.ndarray:
        """Mark rows whose hash appeared earlier (in a previous call or earlier in this one)."""
        h = np.asarray(hashes, dtype=np.uint64)
        dup = np.ones(len(h), dtype=bool)
        if len(h) == 0:
            return dup
        uniq, first = np.unique(h, return_index=True)
        dup[first] = False
        known = np.zeros(len(uniq), dtype=bool)
        for level in self.levels:
            pos = np.searchsorted(level, uniq)
            pos[pos == len(level)] = len(level) - 1
            known |= level[pos] == uniq
        dup[first[known]] = True
        self._push(uniq[~known])
        return dup

    def _push(self, arr: np.ndarray) -> None:
        if len(arr) == 0:
            return
        self.levels.append(arr)
        while len(self.levels) >= 2 and len(self.levels[-2]) <= 2 * len(self.levels[-1]):
            b = self.levels.pop()
            a = self.levels.pop()
            merged = np.concatenate([a, b])
            merged.sort(kind="stable")
            self.levels.append(merged)
