"""The data stage, top to bottom: sources -> clean tables -> labels -> splits -> report.

    sources -> ingest -> derive labels -> split -> augment train
    -> behaviour report -> manifest.json (written last, with the reconciliation)

The sources are the shop's export, read through :mod:`shelfops.data.sources`; the built-in
synthetic shop is one such export (:func:`shelfops.sim.shop.export` writes it and gives
its sources), so this stage never knows whether a shop is real.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timezone
from pathlib import Path
from typing import Any

import polars as pl

from shelfops.artifacts import Manifest, input_ref, read_manifest, stage_output
from shelfops.config.schema import DataConfig
from shelfops.data import ray_derive, ray_tasks
from shelfops.data import splits as splitting
from shelfops.data.augment import augment_train_split
from shelfops.data.ingest import Limits, ingest
from shelfops.data.labels import derive_judgements
from shelfops.data.privacy import check_key, resolve_key
from shelfops.data.ray_ingest import ingest_ray
from shelfops.data.report.dataset import report_dataset
from shelfops.data.sources import SourceSpec, amazon_files, build_spec, source_files, spec_from_config
from shelfops.data.validate import Rules
from shelfops.errors import ConfigError, RejectRatioExceeded

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------- builders


def rules_from(cfg: DataConfig, timestamp_format: str | None = None) -> Rules:
    c = cfg.cleaning
    from datetime import datetime, timedelta

    return Rules(
        strip_html=c.strip_html, mask_pii=cfg.privacy.mask_pii,
        earliest=c.earliest_timestamp.replace(tzinfo=c.earliest_timestamp.tzinfo or timezone.utc),
        latest=datetime.now(timezone.utc) + timedelta(hours=c.future_slack_hours),
        timestamp_format=timestamp_format,
    )


def limits_from(cfg: DataConfig) -> Limits:
    c = cfg.cleaning
    return Limits(
        batch_rows=c.batch_rows, drop_duplicates=c.drop_duplicates,
        require_known_items=c.require_known_items,
        bot_max_events_per_minute=c.bot_max_events_per_minute, bot_min_events=c.bot_min_events,
        max_reject_ratio=c.max_reject_ratio,
    )


def export_specs(folder: Path) -> list[SourceSpec]:
    """The sources of an export folder holding ``items``, ``events`` and ``judgements`` as Parquet
    (the synthetic shop's export, or a snapshot of one as of a day)."""
    return [build_spec("parquet", [str(Path(folder) / f"{t}.parquet")], table=t)
            for t in ("items", "events", "judgements")]


# ----------------------------------------------------------------------------- the recipe


def run(
    cfg: DataConfig, out: Path, *, specs: list[SourceSpec] | None = None,
    source_summary: dict[str, Any] | None = None, progress: bool = True, say: Say = _quiet,
    config_dump: dict[str, Any] | None = None,
) -> Manifest:
    """Run the data stage into ``out`` on ``specs`` (default: ``cfg.sources``); return its
    manifest. ``source_summary`` (what the export says of itself, e.g. the synthetic shop's
    summary) is kept in the manifest."""
    out = Path(out)
    key, key_source = resolve_key(
        cfg.privacy.key.get_secret_value() if cfg.privacy.key else None, cfg.privacy.key_env
    )
    check_key(key)
    say(f"pseudonymisation key: {key_source}")

    if specs is None:
        if not cfg.sources:
            raise ConfigError(["data.sources: no sources given (the built-in synthetic shop is written by "
                               "shelfops.sim.shop.export, or `shelfops data generate`)"])
        specs = [spec_from_config(s) for s in cfg.sources]
    inputs = [input_ref(p) for s in specs for p in _all_paths(s)]
    rules = rules_from(cfg, next((s.timestamp_format for s in specs if s.timestamp_format), None))
    limits = limits_from(cfg)

    with stage_output(out, "data", config=config_dump or cfg.model_dump(mode="json"),
                      inputs=inputs) as w, _engine(cfg, progress) as ray:
        engine = ingest_ray if ray else ingest
        counts = engine(specs, w.dir, rules=rules, key=key, limits=limits, progress=progress)
        too_bad = counts.pop("_reject_ratio_exceeded")
        bots = counts.pop("_bots")
        say(_reconciliation_text(counts))
        tables = {t: w.dir / f"{t}.parquet" for t in ("items", "events", "judgements")
                  if (w.dir / f"{t}.parquet").exists()}
        extra: dict[str, Any] = {"bot_sessions": bots["sessions"], "privacy": {
            "ids": "HMAC-SHA256 keyed pseudonyms (16 hex)", "key_source": key_source.split(" (")[0],
            "pii_masked_in_queries": cfg.privacy.mask_pii}}
        if source_summary is not None:
            extra["synthetic"] = source_summary

        labels = derive_labels(tables, cfg, w.dir, ray)
        if labels is not None:
            say(f"labels derived from behaviour: {labels:,} (query, item) grades")
        split_counts = make_splits(w.dir, cfg, say, ray)
        extra["splits"] = split_counts

        written = report_dataset(w.dir, w.dir / "report", **cfg.report.model_dump())
        report = json.loads(written["report.json"].read_text())
        w.manifest.counts = {k: v for k, v in counts.items()}
        w.manifest.counts["labels_from_behaviour"] = labels or 0
        w.manifest.metrics = _headline_metrics(report)
        w.manifest.extra = extra
        if too_bad:
            w.manifest.extra["status"] = "rejected"
            w.manifest.notes.append("reject ratio exceeded: " + "; ".join(too_bad))
    if too_bad:
        raise RejectRatioExceeded(
            "too many rows rejected (the dataset was written for inspection, marked rejected):\n  "
            + "\n  ".join(too_bad), files=too_bad,
        )

    return read_manifest(out)


@contextmanager
def _engine(cfg: DataConfig, progress: bool) -> Iterator[Any]:
    """The ``ray`` module for ``data.engine: ray`` (joined for the whole stage), else None."""
    if cfg.engine != "ray":
        yield None
        return
    with ray_tasks.session(progress) as ray:
        yield ray


def _all_paths(spec: SourceSpec) -> list[str]:
    if spec.format == "amazon":
        return [p for p in amazon_files(spec.paths) if p]
    return source_files(spec)


def _reconciliation_text(counts: dict) -> str:
    lines = []
    for table, t in counts.items():
        if not isinstance(t, dict) or "rows_in" not in t:
            continue
        reasons = ", ".join(f"{r} {c:,}" for r, c in sorted(t["by_reason"].items())) or "none"
        derived = t.get("derived_from_other_tables") or t.get("stub_items_from_events")
        if table == "items" and not t["rows_in"] and derived:
            how = "described by other tables' rows" if "derived_from_other_tables" in t else \
                "ids only, taken from the events (no catalogue given)"
            lines.append(f"{table:<10} {derived:>10,} {how}")
            continue
        lines.append(
            f"{table:<10} in {t['rows_in']:>10,} = kept {t['kept']:>10,} + quarantined "
            f"{t['quarantined']:>8,}  ({reasons})"
        )
    return "\n".join(lines)


def derive_labels(tables: dict[str, Path], cfg: DataConfig, out: Path, ray=None) -> int | None:
    """Graded relevance from behaviour, when there are searches with impressions (on the
    cluster with ``ray``: :mod:`shelfops.data.ray_derive`)."""
    if "events" not in tables:
        return None
    ev = pl.scan_parquet(tables["events"])
    has = ev.select(
        (pl.col("event_type") == "impression").any().alias("imp"),
        pl.col("query").is_not_null().any().alias("q"),
    ).collect()
    if not (has["imp"][0] and has["q"][0]):
        return None

    lab = cfg.labels
    if ray is not None:
        return ray_derive.derive_labels(ray, out, lab)
    df = derive_judgements(
        ev, purchase=lab.purchase, add_to_cart=lab.add_to_cart, click=lab.click,
        impression=lab.impression, min_impressions=lab.min_impressions,
    )
    df.write_parquet(out / "labels.parquet")
    return len(df)


def make_splits(root: Path, cfg: DataConfig, say: Say, ray=None) -> dict[str, Any]:
    """Write splits/<name>_{train,valid,test}.parquet for every table that supports one (the
    events' splits on the cluster with ``ray``: :mod:`shelfops.data.ray_derive`)."""

    sc = cfg.splits
    out = root / "splits"
    out.mkdir(exist_ok=True)
    summary: dict[str, Any] = {}

    def save(name: str, parts: dict[str, pl.DataFrame | pl.LazyFrame], method: str) -> None:
        for part, df in parts.items():
            if isinstance(df, pl.DataFrame):  # (a LazyFrame scans what the cluster wrote)
                df.write_parquet(out / f"{name}_{part}.parquet")
        summary[name] = {"method": method, **splitting.split_summary(parts)}
        say(f"split {name} ({method}): " + ", ".join(
            f"{k} {v['rows']:,}" for k, v in summary[name].items() if isinstance(v, dict)))

    items = pl.read_parquet(root / "items.parquet") if (root / "items.parquet").exists() else None
    events_path = root / "events.parquet"
    if events_path.exists():
        ev = pl.scan_parquet(events_path)
        has = ev.select(
            (pl.col("event_type").is_in(list(splitting.LOO_EVENT_TYPES)) & pl.col("user_id").is_not_null()
             ).any().alias("users"), pl.col("timestamp").is_not_null().any().alias("ts")).collect()
        if sc.method in ("auto", "leave_one_out") and has["users"][0]:
            save("sequences", ray_derive.leave_one_out(ray, root) if ray else splitting.leave_one_out(ev),
                 "leave_one_out")
        if has["ts"][0] and sc.method in ("auto", "time"):
            times = dict(cutoff=sc.cutoff, val_days=sc.val_days, test_days=sc.test_days)
            save("events", ray_derive.time_split(ray, root, **times) if ray else
                 splitting.time_split(ev, time_col="timestamp", **times), "time")
    for name in ("judgements", "labels"):
        path = root / f"{name}.parquet"
        if not path.exists():
            continue
        df = pl.read_parquet(path)
        if name == "labels":  # in pair order, however they were written (the ray engine: in pair buckets)
            df = df.sort("query", "item_id")
        if df.is_empty() or sc.method not in ("auto", "group_kfold"):
            continue
        parts = splitting.group_kfold(df, group_col="query", folds=sc.folds, test_fold=sc.test_fold,
                                      val_fold=sc.val_fold, seed=sc.seed)
        if cfg.augment.enabled and items is not None:
            a = cfg.augment
            aug = augment_train_split(
                dict(parts), items, variants_per_query=a.variants_per_query,
                typo_rate=a.typo_rate, case_rate=a.case_rate, drop_rate=a.drop_rate,
                pseudo_queries_per_item=a.pseudo_queries_per_item, seed=a.seed,
            )
            aug["train"].write_parquet(out / f"{name}_train_augmented.parquet")
            summary[f"{name}_train_augmented"] = len(aug["train"])
        save(name, parts, "group_kfold")
    return summary


def _headline_metrics(report: dict) -> dict[str, Any]:
    """Funnel conversion per step (event level and session level) for the manifest."""
    funnel = report.get("funnel") or {}
    if not funnel.get("available"):
        return {}
    return {"funnel": {
        s["step"]: {"events": s["events"], "rate_from_previous": s["rate_from_previous"],
                    "session_share": s["session_share"]}
        for s in funnel.get("steps", [])}}


def funnel_line(metrics: dict[str, Any]) -> str:
    steps = metrics.get("funnel") or {}
    parts = []
    for name, s in steps.items():
        rate = s["rate_from_previous"]
        parts.append(f"{name} {s['events']:,}" + (f" ({rate:.1%})" if rate is not None else ""))
    return "funnel: " + " -> ".join(parts) if parts else "funnel: not available"
