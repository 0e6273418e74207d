"""A shop's export as it was at an earlier moment: what a model built then could have seen.

Events after the cut are dropped; products whose first event comes after it had not been
launched yet and are dropped with their judgements. Used to build the demo's first release
on the shop before its drift, from the same generated shop the later releases see whole.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl

from shelfops.errors import DataError


def export_as_of(src: Path, out: Path, cutoff: datetime) -> dict:
    """Write ``items``, ``events`` and ``judgements`` parquet of ``src`` as of ``cutoff`` into ``out``."""
    src, out = Path(src), Path(out)
    for name in ("items", "events"):
        if not (src / f"{name}.parquet").exists():
            raise DataError(f"{src}: no {name}.parquet to take a snapshot of")
    events = pl.read_parquet(src / "events.parquet")
    if events["timestamp"].null_count() == len(events):
        raise DataError(f"{src / 'events.parquet'}: no timestamps, so no snapshot in time can be taken")
    cut = pl.lit(cutoff).cast(events.schema["timestamp"])
    first = events.filter(pl.col("item_id").is_not_null()).group_by("item_id").agg(
        pl.col("timestamp").min().alias("first_seen"))
    later = set(first.filter(pl.col("first_seen") >= cut)["item_id"].to_list())
    out.mkdir(parents=True, exist_ok=True)
    kept_events = events.filter(pl.col("timestamp") < cut)
    kept_events.write_parquet(out / "events.parquet")
    items = pl.read_parquet(src / "items.parquet")
    kept_items = items.filter(~pl.col("item_id").is_in(list(later)))
    kept_items.write_parquet(out / "items.parquet")
    counts = {"cutoff": cutoff.isoformat(), "events": len(kept_events), "events_dropped": len(events) - len(kept_events),
              "items": len(kept_items), "items_not_yet_launched": len(later)}
    if (src / "judgements.parquet").exists():
        j = pl.read_parquet(src / "judgements.parquet")
        kept = j.filter(~pl.col("item_id").is_in(list(later)))
        kept.write_parquet(out / "judgements.parquet")
        counts["judgements"] = len(kept)
    (out / "snapshot.json").write_text(json.dumps({"source": str(src.resolve()), **counts}, indent=2))
    return counts
