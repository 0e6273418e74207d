"""The built-in synthetic shop: a catalogue, behaviour logs, judgements and hidden truth.

:func:`generate_shop` writes the shop's *raw export* (ids not yet pseudonymised)::

    out_dir/items.parquet        ITEMS       the catalogue (item_id "i00042", category paths)
    out_dir/events.parquet       EVENTS      sessions sorted by time, seq = 0..n-1
    out_dir/judgements.parquet   JUDGEMENTS  rint(hidden relevance), 0..3, ~15-20 items a query
    out_dir/truth/               the hidden model (.npz + JSON), read by ShopTruth.load

Events are simulated a block of sessions at a time (vectorised, see
:mod:`shelfops.sim.shop.sessions`) and streamed to Parquet, so memory stays bounded
whatever the size. The same seed gives the same tables. The behaviour model lives in
:mod:`shelfops.sim.shop.truth`; :class:`ShopTruth` lets a traffic simulator play the
same shoppers against a served model.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shelfops.errors import ConfigError
from shelfops.sim.shop.catalogue import (
    LexicalIndex,
    build_query_bank,
    build_vocab,
    item_ids,
    make_catalogue,
)
from shelfops.sim.shop.sessions import (
    KIND_BOT,
    KIND_BROWSE,
    KIND_SEARCH,
    Events,
    ItemSampler,
    Phase,
    Ranker,
    SearchStats,
    Sessions,
    build_neighbours,
    build_ranker,
    simulate_bots,
    simulate_browse,
    simulate_search,
)
from shelfops.sim.shop.truth import Drift, Params, ShopTruth, make_users, relevance_of
from shelfops.tables import CATEGORY_SEP, EVENT_TYPES, EVENTS, JUDGEMENTS

__all__ = ["ShopTruth", "generate_shop"]

DAY_MS = 86_400_000
BLOCK_SESSIONS = 20_000
ROW_GROUP = 256_000  # events per Parquet row group (about)
BOT_SHARE = 0.005
ANONYMOUS_SHARE = 0.04
# sessions starting in each hour of the day (UTC), evening peak
HOURS = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 7, 6, 6, 6, 7, 8, 9, 10, 9, 6, 4], float)
WEEKDAY = np.array([1.0, 0.95, 0.95, 1.0, 1.05, 1.15, 1.15])  # Monday first


def _width(n: float, least: int) -> int:
    return max(least, len(str(int(n))))


def _check(users: int, items: int, days: int, rate: float, drift_strength: float,
           judged: int, target: int | None) -> None:
    problems = [f"{name} must be >= {low}, got {v}" for name, v, low in (
        ("users", users, 1), ("items", items, 10), ("days", days, 1), ("judged_queries", judged, 0))
        if v < low]
    if not rate > 0:
        problems.append(f"sessions_per_user_per_day must be > 0, got {rate}")
    if not 0 <= drift_strength <= 1:
        problems.append(f"drift_strength must be in [0, 1], got {drift_strength}")
    if target is not None and target < 1:
        problems.append(f"target_events must be >= 1, got {target}")
    if problems:
        raise ConfigError(problems, source="generate_shop")


class EventWriter:
    """Turns integer event columns into EVENTS rows and streams them to Parquet."""

    def __init__(self, path: Path, truth: ShopTruth, widths: dict[str, int]) -> None:
        self.writer = pq.ParquetWriter(path, EVENTS)
        self.users = pa.array([f"u{u:0{widths['user']}d}" for u in range(len(truth.users))])
        self.items = pa.array(item_ids(len(truth.cat)))
        self.queries = pa.array(truth.bank.text, pa.string())
        self.types = pa.array(EVENT_TYPES, pa.string())
        self.widths = widths
        self.rows = 0
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.by_type = np.zeros(len(EVENT_TYPES), np.int64)
        self.last_ts: int | None = None

    @staticmethod
    def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
        return values.take(pa.array(np.maximum(idx, 0), mask=idx < 0))

    @staticmethod
    def _ids(prefix: str, width: int, idx: np.ndarray) -> pa.Array:
        ok = idx >= 0
        if not ok.any():
            return pa.nulls(len(idx), pa.string())
        lo, hi = int(idx[ok].min()), int(idx[ok].max())
        names = pa.array([f"{prefix}{k:0{width}d}" for k in range(lo, hi + 1)])
        return names.take(pa.array(np.where(ok, idx - lo, 0), mask=~ok))

    def write(self, e: dict[str, np.ndarray]) -> int:
        """Append events (already in time order); returns how many."""
        n = len(e["ts"])
        if n == 0:
            return 0
        cols = [
            self._take(self.users, e["user"]),
            self._ids("s", self.widths["session"], e["sess"]),
            self._take(self.items, e["item"]),
            self.types.take(pa.array(e["etype"].astype(np.int32))),
            self._take(self.queries, e["query"]),
            pa.array(e["ts"], pa.timestamp("ms", tz="UTC")),
            pa.array(np.arange(self.rows, self.rows + n, dtype=np.int64)),
            pa.array(e["pos"].astype(np.int32), mask=e["pos"] == 0),
            self._ids("r", self.widths["request"], e["req"]),
        ]
        self.pending.append(pa.Table.from_arrays(cols, schema=EVENTS))
        self.pending_rows += n
        if self.pending_rows >= ROW_GROUP:
            self._flush()
        self.rows += n
        self.by_type += np.bincount(e["etype"], minlength=len(EVENT_TYPES))
        self.last_ts = int(e["ts"][-1])
        return n

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=ROW_GROUP)
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self.writer.close()


def _sort_and_split(carry: dict[str, np.ndarray] | None, new: dict[str, np.ndarray],
                    boundary: int | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Merge, order by (time, session, step), and cut at ``boundary`` (None: keep none)."""
    e = new if carry is None else {k: np.concatenate([carry[k], new[k]]) for k in new}
    o = np.lexsort((e["order"], e["sess"], e["ts"]))
    e = {k: v[o] for k, v in e.items()}
    cut = len(e["ts"]) if boundary is None else int(np.searchsorted(e["ts"], boundary))
    return {k: v[:cut] for k, v in e.items()}, {k: v[cut:] for k, v in e.items()}


def _day_sessions(rng: np.random.Generator, truth: ShopTruth, day: int, day_start: int,
                  rate: float, first_gid: int) -> Sessions:
    u = truth.users
    w = u.activity * ((u.join_day <= day) & (day < u.leave_day))
    weekday = datetime.fromtimestamp(day_start / 1000, timezone.utc).weekday()
    n = int(rng.poisson(len(u) * rate * WEEKDAY[weekday])) if w.sum() > 0 else 0
    cw = np.cumsum(w, dtype=np.float64)
    user = np.minimum(np.searchsorted(cw, rng.random(n) * cw[-1], side="right"), len(u) - 1)
    hour = rng.choice(24, n, p=HOURS / HOURS.sum())
    start = day_start + hour * 3_600_000 + rng.integers(0, 3_600_000, n)
    bot = rng.random(n) < BOT_SHARE
    kind = np.where(bot, KIND_BOT, np.where(rng.random(n) < u.search_prop[user], KIND_SEARCH,
                                            KIND_BROWSE))
    anon = rng.random(n) < np.where(bot, 0.7, ANONYMOUS_SHARE)
    o = np.argsort(start, kind="stable")
    return Sessions(gid=first_gid + np.arange(n, dtype=np.int64), user=user[o].astype(np.int32),
                    shown=np.where(anon, -1, user)[o].astype(np.int32),
                    kind=kind[o].astype(np.int8), start=start[o].astype(np.int64))


def _phases(rng: np.random.Generator, truth: ShopTruth) -> tuple[Phase, Phase]:
    cat = truth.cat
    old = cat.launch_day == 0
    nb_old = build_neighbours(rng, cat, old, np.arange(truth.vocab.n_leaves))
    before = Phase(old, np.flatnonzero(old), nb_old, ItemSampler.build(cat, old))
    if old.all():
        return before, before
    every = np.ones(len(cat), bool)
    changed = np.unique(cat.leaf[~old])
    nb_new = build_neighbours(rng, cat, every, changed, out=nb_old)
    return before, Phase(every, np.arange(len(cat)), nb_new, ItemSampler.build(cat, every))


@dataclass
class EventTally:
    """Running counts of the simulation (for the summary)."""

    before: SearchStats  # searches before the drift day
    after: SearchStats  # and from it on
    sessions: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))  # by kind
    anonymous: int = 0
    next_gid: int = 0
    next_req: int = 0
    days: int = 0
    stopped: bool = False


def _simulate_block(rng: np.random.Generator, truth: ShopTruth, ranker: Ranker, phase: Phase,
                    b: Sessions, day: int, tally: EventTally) -> dict[str, np.ndarray]:
    """All events of one block of sessions, unsorted."""
    ev = Events()
    drifted = truth.drift.day is not None and day >= truth.drift.day
    tally.next_req = simulate_search(rng, truth, ranker, b.take(b.kind == KIND_SEARCH), day, ev,
                                     tally.next_req, tally.after if drifted else tally.before)
    simulate_browse(rng, truth, phase, b.take(b.kind == KIND_BROWSE), day, ev)
    simulate_bots(rng, phase, b.take(b.kind == KIND_BOT), ev)
    tally.sessions += np.bincount(b.kind, minlength=3)
    tally.anonymous += int((b.shown < 0).sum())
    return ev.arrays()


def _simulate_days(rng: np.random.Generator, truth: ShopTruth, ranker: Ranker,
                   phases: tuple[Phase, Phase], writer: EventWriter, tally: EventTally, bar: Any, *,
                   start_ms: int, days: int, rate: float, target: int | None) -> None:
    """Day by day, block by block: simulate, order by time, write what can no longer be
    overtaken (events before the next block's first session start), carry the rest."""
    carry: dict[str, np.ndarray] | None = None
    for day in range(days):
        day_start = start_ms + day * DAY_MS
        s = _day_sessions(rng, truth, day, day_start, rate, tally.next_gid)
        tally.next_gid += len(s.gid)
        drifted = truth.drift.day is not None and day >= truth.drift.day
        phase = phases[1] if drifted else phases[0]
        for a in range(0, len(s.gid), BLOCK_SESSIONS):
            new = _simulate_block(rng, truth, ranker, phase, s.take(slice(a, a + BLOCK_SESSIONS)),
                                  day, tally)
            pending = (0 if carry is None else len(carry["ts"])) + len(new["ts"])
            tally.stopped = target is not None and writer.rows + pending >= target
            more = a + BLOCK_SESSIONS < len(s.gid)
            last = tally.stopped or (day == days - 1 and not more)
            boundary = int(s.start[a + BLOCK_SESSIONS]) if more else day_start + DAY_MS
            ready, carry = _sort_and_split(carry, new, None if last else boundary)
            written = writer.write(ready)
            if bar is not None:
                bar.update(bar.task_ids[0], advance=written if target else 0,
                           note=f"day {day + 1}/{days}  {writer.rows:,} events")
            if tally.stopped:
                break
        tally.days = day + 1
        if bar is not None and not target:
            bar.update(bar.task_ids[0], advance=1)
        if tally.stopped:
            break
    if carry is not None:
        writer.write(carry)


def _item_texts(items: pa.Table) -> list[str]:
    """What a lexical engine indexes of a product: title, brand and category leaf."""
    return [f"{t} {b} {c.rsplit(CATEGORY_SEP, 1)[-1]}" for t, b, c in zip(
        items.column("title").to_pylist(), items.column("brand").to_pylist(),
        items.column("category").to_pylist())]


# Judged pool of a query (at most 20 items, about 15-20): the most relevant items, the
# production ranker's candidates, others of the query's leaf, items of other leaves that
# share a word with the query (lexical distractors) and random items.
POOL_PARTS = {"best": 5, "ranker": 3, "leaf": 3, "distractors": 4, "random": 3}


def make_judgements(rng: np.random.Generator, truth: ShopTruth, ranker: Ranker,
                    lex: LexicalIndex, n_queries: int) -> pa.Table:
    """Graded judgements (rint of the hidden relevance) for distinct bank queries, each
    over a pool of :data:`POOL_PARTS`."""
    bank, cat = truth.bank, truth.cat
    cand = np.arange(truth.n_zero_start)
    w = np.sqrt(bank.weight[cand] * truth.pop_leaf[bank.leaf[cand]])
    k = min(n_queries, len(cand))
    chosen = rng.choice(cand, k, replace=False, p=w / w.sum()) if k else cand[:0]
    leaf_items = [np.flatnonzero(cat.leaf == li) for li in range(truth.vocab.n_leaves)]
    rows_q: list[str] = []
    rows_i: list[np.ndarray] = []
    rows_g: list[np.ndarray] = []
    n = POOL_PARTS
    for qi in chosen:
        q = bank.query(int(qi))
        same = leaf_items[q.leaf]
        rel = relevance_of(q, truth.vocab, cat, same, truth.params)
        best = same[np.lexsort((rng.random(len(same)), -rel))[:n["best"]]]
        pool = ranker.items[qi][ranker.items[qi] >= 0]
        shared = lex.scores(bank.text[qi])
        other = np.flatnonzero((shared > 0) & (cat.leaf != q.leaf))
        top = other[np.argsort(-(shared[other] + rng.gumbel(0.0, 0.5, len(other))),
                               kind="stable")[:3 * n["distractors"]]]
        picks = [best, rng.permutation(pool)[:n["ranker"]], rng.permutation(same)[:n["leaf"]],
                 rng.permutation(top)[:n["distractors"]],
                 rng.integers(0, len(cat), n["random"] + n["distractors"] - min(
                     len(top), n["distractors"]))]
        ids = np.unique(np.concatenate(picks))[:20]
        ids = ids[rng.permutation(len(ids))]
        rows_q += [bank.text[qi]] * len(ids)
        rows_i.append(ids)
        rows_g.append(np.rint(relevance_of(q, truth.vocab, cat, ids, truth.params)))
    ids = np.concatenate(rows_i) if rows_i else np.zeros(0, np.int64)
    names = item_ids(len(cat))
    return pa.Table.from_arrays([
        pa.array(rows_q, pa.string()), pa.array([names[i] for i in ids], pa.string()),
        pa.array(np.concatenate(rows_g) if rows_g else np.zeros(0), pa.float64()),
    ], schema=JUDGEMENTS)


def _progress(enabled: bool, total: int, label: str) -> Any:
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[note]}"), TimeElapsedColumn())
    bar.add_task(label, total=total, note="")
    return bar


def _make_truth(r_cat: np.random.Generator, r_users: np.random.Generator, *, users: int,
                items: int, days: int, rate: float, seed: int, start: datetime,
                drift_day: int | None, drift_strength: float, new_share: float = 0.03,
                ) -> tuple[ShopTruth, pa.Table, dict[str, int]]:
    """Catalogue, shoppers, query bank and drift: the hidden model, plus the ITEMS table
    and the digit widths of the ids."""
    params = Params()
    vocab = build_vocab()
    drifting = drift_day is not None and 0 <= drift_day < days
    trending = int(r_cat.integers(vocab.n_leaves)) if drifting else None
    n_new = min(max(3, round(new_share * items)), items // 2) if drifting else 0
    cat, items_tbl = make_catalogue(r_cat, vocab, items, new_leaf=trending, n_new=n_new,
                                    launch=drift_day if drifting else 0)
    leaf_ok = np.bincount(cat.leaf[cat.launch_day == 0], minlength=vocab.n_leaves) > 0
    population = make_users(r_users, users, vocab, days=days, leaf_ok=leaf_ok,
                            trending=trending, params=params)
    t0 = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    start_ms = int(t0.timestamp() * 1000)
    expected = users * rate * days * 1.2
    widths = {"user": _width(users - 1, 6), "session": _width(expected * 3, 7),
              "request": _width(expected * 12, 9)}
    drift = Drift(day=drift_day if drifting else None, leaf=trending, strength=drift_strength,
                  ramp_days=params.drift_ramp_days)
    meta = {"seed": seed, "start": t0.isoformat(), "start_ms": start_ms, "days": days,
            "user_width": widths["user"], "n_new_items": n_new}
    truth = ShopTruth(vocab=vocab, cat=cat, users=population,
                      bank=build_query_bank(vocab, cat, r_cat), params=params, drift=drift,
                      meta=meta)
    return truth, items_tbl, widths


def generate_shop(out_dir: Path, *, users: int, items: int, days: int,
                  sessions_per_user_per_day: float, seed: int, start: datetime,
                  drift_day: int | None, drift_strength: float, judged_queries: int,
                  target_events: int | None, drift_new_items: float, progress: bool = True) -> dict:
    """Write the synthetic shop into ``out_dir``; return a summary of what was written.

    ``drift_day`` (0-based, None for none): from that day a rarely searched leaf trends
    (its share of searches ramps up to ``drift_strength`` over 3 days, and new items,
    ``drift_new_items`` of the catalogue, launch in it). ``target_events`` stops after about
    that many events.
    """
    _check(users, items, days, sessions_per_user_per_day, drift_strength, judged_queries,
           target_events)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r_cat, r_users, r_rank, r_nb, r_events, r_judge = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6))
    truth, items_tbl, widths = _make_truth(
        r_cat, r_users, users=users, items=items, days=days, rate=sessions_per_user_per_day,
        seed=seed, start=start, drift_day=drift_day, drift_strength=drift_strength,
        new_share=drift_new_items)
    pq.write_table(items_tbl, out / "items.parquet")
    truth.save(out / "truth")
    lex = LexicalIndex(_item_texts(items_tbl))
    ranker = build_ranker(r_rank, truth, lex)
    phases = _phases(r_nb, truth)

    leaves = truth.vocab.n_leaves
    tally = EventTally(before=SearchStats(np.zeros(leaves, np.int64)),
                       after=SearchStats(np.zeros(leaves, np.int64)))
    writer = EventWriter(out / "events.parquet", truth, widths)
    try:
        with _progress(progress, target_events or days, "synthetic shop") as bar:
            _simulate_days(r_events, truth, ranker, phases, writer, tally, bar,
                           start_ms=truth.meta["start_ms"],
                           days=days, rate=sessions_per_user_per_day, target=target_events)
    finally:
        writer.close()

    judgements = make_judgements(r_judge, truth, ranker, lex, judged_queries)
    pq.write_table(judgements, out / "judgements.parquet")
    return _summary(truth, writer, judgements, tally)


def shop_truth(*, users: int, items: int, days: int, sessions_per_user_per_day: float, seed: int,
               start: datetime, drift_day: int | None, drift_strength: float,
               drift_new_items: float, **_: Any) -> ShopTruth:
    """The hidden model :func:`generate_shop` would write for these settings (same seeds), without
    simulating a single event: what experiments on the shop's shoppers start from. Takes
    ``SyntheticConfig.model_dump()`` as it is (settings of the events alone are ignored)."""
    r_cat, r_users, *_rest = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6))
    truth, _items, _widths = _make_truth(
        r_cat, r_users, users=users, items=items, days=days, rate=sessions_per_user_per_day, seed=seed,
        start=start, drift_day=drift_day, drift_strength=drift_strength, new_share=drift_new_items)
    return truth


def _summary(truth: ShopTruth, writer: EventWriter, judgements: pa.Table,
             tally: EventTally) -> dict[str, Any]:
    before, after, sessions = tally.before, tally.after, tally.sessions
    drift: dict[str, Any] | None = None
    if truth.drift.leaf is not None:
        leaf = truth.drift.leaf

        def share(st: SearchStats) -> float | None:
            tot = int(st.leaf_counts.sum())
            return round(float(st.leaf_counts[leaf]) / tot, 4) if tot else None

        drift = {"day": truth.drift.day, "strength": truth.drift.strength,
                 "trending_category": truth.vocab.leaf_paths[leaf],
                 "trending_query_term": truth.vocab.leaf_terms[leaf],
                 "new_items": int(truth.meta["n_new_items"]),
                 "search_share_before": share(before), "search_share_after": share(after)}
    grades = np.asarray(judgements.column("grade"))
    return {
        "items": len(truth.cat), "users": len(truth.users),
        "sessions": {"total": int(sessions.sum()), "search": int(sessions[KIND_SEARCH]),
                     "browse": int(sessions[KIND_BROWSE]), "bot": int(sessions[KIND_BOT]),
                     "anonymous": tally.anonymous},
        "events": writer.rows,
        "events_by_type": {t: int(c) for t, c in zip(EVENT_TYPES, writer.by_type)},
        "search_requests": tally.next_req,
        "zero_result_searches": before.zero_result + after.zero_result,
        "judgements": judgements.num_rows,
        "judged_queries": len(set(judgements.column("query").to_pylist())),
        "judgement_grades": {str(g): int((grades == g).sum()) for g in range(4)},
        "queries_in_bank": truth.n_zero_start,
        "days": tally.days, "stopped_at_target": tally.stopped,
        "start": truth.meta["start"],
        "end": None if writer.last_ts is None else datetime.fromtimestamp(
            writer.last_ts / 1000, timezone.utc).isoformat(),
        "drift": drift,
        "seed": truth.meta["seed"],
        "truth": "truth/",
    }
