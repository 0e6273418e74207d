"""The data stage, top to bottom: sources -> clean tables -> labels -> splits -> report.

    generate (synthetic shop only) -> ingest -> derive labels -> split -> augment train
    -> behaviour report -> manifest.json (written last, with the reconciliation)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timezone
from pathlib import Path
from typing import Any

import polars as pl

from shelfops.artifacts import Manifest, input_ref, read_manifest, stage_output
from shelfops.config.schema import DataConfig, SyntheticConfig
from shelfops.data import splits as sp
from shelfops.data.augment import augment_train_split
from shelfops.data.ingest import Limits, ingest
from shelfops.data.labels import derive_judgements
from shelfops.data.privacy import check_key, resolve_key
from shelfops.data.report import report_dataset
from shelfops.data.sources import SourceSpec, amazon_files, build_spec, spec_from_config
from shelfops.data.synthetic import generate_shop
from shelfops.data.validate import Rules
from shelfops.errors import RejectRatioExceeded

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


def generate(syn: SyntheticConfig, out: Path, *, progress: bool = True) -> dict[str, Any]:
    """Write the synthetic shop's raw export (a *source*, raw ids and all) into ``out``."""

    out.mkdir(parents=True, exist_ok=True)
    summary = generate_shop(
        out, users=syn.users, items=syn.items, days=syn.days,
        sessions_per_user_per_day=syn.sessions_per_user_per_day, seed=syn.seed,
        start=syn.start, drift_day=syn.drift_day, drift_strength=syn.drift_strength,
        judged_queries=syn.judged_queries, target_events=syn.target_events, progress=progress,
        drift_new_items=syn.drift_new_items,
    )
    (out / "shop.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def synthetic_specs(raw: Path) -> list[SourceSpec]:
    return [
        build_spec("parquet", [str(raw / "items.parquet")], table="items"),
        build_spec("parquet", [str(raw / "events.parquet")], table="events"),
        build_spec("parquet", [str(raw / "judgements.parquet")], table="judgements"),
    ]


# ----------------------------------------------------------------------------- the recipe


def run(
    cfg: DataConfig, out: Path, *, specs: list[SourceSpec] | None = None,
    raw_dir: Path | None = None, progress: bool = True, say: Say = _quiet,
    config_dump: dict[str, Any] | None = None,
) -> Manifest:
    """Run the data stage into ``out``; return its manifest."""
    out = Path(out)
    key, key_source = resolve_key(
        cfg.privacy.key.get_secret_value() if cfg.privacy.key else None, cfg.privacy.key_env
    )
    check_key(key)
    say(f"pseudonymisation key: {key_source}")

    synthetic_summary = None
    if specs is None:
        if cfg.sources:
            specs = [spec_from_config(s) for s in cfg.sources]
        else:
            syn = cfg.synthetic or SyntheticConfig()
            raw_dir = raw_dir or out.parent / f"{out.name}-source"
            say(f"generating the synthetic shop into {raw_dir} (the shop's raw export)")
            synthetic_summary = generate(syn, raw_dir, progress=progress)
            specs = synthetic_specs(raw_dir)
    inputs = [input_ref(p) for s in specs for p in _all_paths(s)]
    rules = rules_from(cfg, next((s.timestamp_format for s in specs if s.timestamp_format), None))
    limits = limits_from(cfg)

    with stage_output(out, "data", config=config_dump or cfg.model_dump(mode="json"),
                      inputs=inputs) as w:
        counts = ingest(specs, w.dir, rules=rules, key=key, limits=limits, progress=progress)
        too_bad = counts.pop("_reject_ratio_exceeded")
        bots = counts.pop("_bots")
        say(_reconciliation_text(counts))
        tables = {t: w.dir / f"{t}.parquet" for t in ("items", "events", "judgements")
                  if (w.dir / f"{t}.parquet").exists()}
        extra: dict[str, Any] = {"bot_sessions": bots["sessions"], "privacy": {
            "ids": "HMAC-SHA256 keyed pseudonyms (16 hex)", "key_source": key_source.split(" (")[0],
            "pii_masked_in_queries": cfg.privacy.mask_pii}}
        if synthetic_summary is not None:
            extra["synthetic"] = synthetic_summary

        labels = derive_labels(tables, cfg, w.dir)
        if labels is not None:
            say(f"labels derived from behaviour: {labels:,} (query, item) grades")
        split_counts = make_splits(w.dir, cfg, say)
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


def _all_paths(spec: SourceSpec) -> list[str]:
    if spec.format == "amazon":
        return [p for p in amazon_files(spec.paths) if p]
    return list(spec.paths)


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


def derive_labels(tables: dict[str, Path], cfg: DataConfig, out: Path) -> int | None:
    """Graded relevance from behaviour, when there are searches with impressions."""
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
    df = derive_judgements(
        ev, purchase=lab.purchase, add_to_cart=lab.add_to_cart, click=lab.click,
        impression=lab.impression, min_impressions=lab.min_impressions,
    )
    df.write_parquet(out / "labels.parquet")
    return len(df)


def make_splits(root: Path, cfg: DataConfig, say: Say) -> dict[str, Any]:
    """Write splits/<name>_{train,valid,test}.parquet for every table that supports one."""

    sc = cfg.splits
    out = root / "splits"
    out.mkdir(exist_ok=True)
    summary: dict[str, Any] = {}

    def save(name: str, parts: dict[str, pl.DataFrame], method: str) -> None:
        for part, df in parts.items():
            df.write_parquet(out / f"{name}_{part}.parquet")
        summary[name] = {"method": method, **sp.split_summary(parts)}
        say(f"split {name} ({method}): " + ", ".join(
            f"{k} {len(v):,}" for k, v in parts.items()))

    items = pl.read_parquet(root / "items.parquet") if (root / "items.parquet").exists() else None
    events_path = root / "events.parquet"
    if events_path.exists():
        ev = pl.read_parquet(events_path)
        interactions = ev.filter(pl.col("event_type").is_in(["view", "click", "add_to_cart", "purchase"]))
        if sc.method in ("auto", "leave_one_out") and interactions["user_id"].null_count() < len(interactions):
            save("sequences", sp.leave_one_out(ev), "leave_one_out")
        has_ts = ev["timestamp"].null_count() < len(ev)
        if has_ts and sc.method in ("auto", "time"):
            save("events", sp.time_split(ev, time_col="timestamp", cutoff=sc.cutoff,
                                         val_days=sc.val_days, test_days=sc.test_days), "time")
    for name in ("judgements", "labels"):
        path = root / f"{name}.parquet"
        if not path.exists():
            continue
        df = pl.read_parquet(path)
        if df.is_empty() or sc.method not in ("auto", "group_kfold"):
            continue
        parts = sp.group_kfold(df, group_col="query", folds=sc.folds, test_fold=sc.test_fold,
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
