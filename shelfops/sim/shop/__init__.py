"""The built-in synthetic shop: a catalogue, behaviour logs, judgements and the hidden truth
that produced them (:mod:`.generate`, :mod:`.catalogue`, :mod:`.sessions`, :mod:`.truth`; its
words are the tables of :mod:`.vocab`, written out by :mod:`.text`).

To the data stage the shop is one more export: :func:`export` writes it and returns the
sources that read it, as a real shop's files would be read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shelfops.config.schema import SyntheticConfig
from shelfops.data.recipe import export_specs
from shelfops.data.sources import SourceSpec
from shelfops.sim.shop.generate import generate_shop, shop_truth
from shelfops.sim.shop.truth import ShopTruth

__all__ = ["ShopTruth", "export", "generate_shop", "shop_truth"]


def export(syn: SyntheticConfig | None, out: Path, *, progress: bool = True) -> tuple[list[SourceSpec], dict[str, Any]]:
    """Write the synthetic shop's raw export (raw ids, as a shop exports them) into ``out``;
    return the sources that read it and the shop's summary (also written to ``shop.json``)."""
    syn = syn or SyntheticConfig()
    out.mkdir(parents=True, exist_ok=True)
    summary = generate_shop(
        out, users=syn.users, items=syn.items, days=syn.days,
        sessions_per_user_per_day=syn.sessions_per_user_per_day, seed=syn.seed,
        start=syn.start, drift_day=syn.drift_day, drift_strength=syn.drift_strength,
        judged_queries=syn.judged_queries, target_events=syn.target_events, progress=progress,
        drift_new_items=syn.drift_new_items,
    )
    (out / "shop.json").write_text(json.dumps(summary, indent=2, default=str))
    return export_specs(out), summary
