"""Generic loaders with column mappings, cleaning rules, privacy and reconciliation."""

from __future__ import annotations

import json

import polars as pl
import pytest

from shelfops.config.schema import CleaningConfig, DataConfig, SyntheticConfig
from shelfops.data.ingest import ingest
from shelfops.data.recipe import limits_from, rules_from
from shelfops.data.scratch import Hashes
from shelfops.data.sources import build_spec

KEY = b"q" * 32


def _ingest(specs, out, **cleaning):
    cfg = DataConfig(synthetic=SyntheticConfig(), cleaning=CleaningConfig(**cleaning))
    return ingest(specs, out, rules=rules_from(cfg), key=KEY, limits=limits_from(cfg), progress=False)


def test_judgement_file_loads_with_mapping_alone(tmp_path):
    f = tmp_path / "j.csv"
    f.write_text(
        "query,product_title,product_description,median_relevance\n"
        "red kettle,<b>Acme Kettle</b> Red,A kettle &amp; more,4\n"
        "red kettle,Acme Toaster,Toasts bread,1\n"
        "  BLUE   mug ,Mugsy Mug,ｍｕｇ,3\n"
    )
    spec = build_spec(
        "csv", [str(f)], table="judgements",
        columns={"query": "query", "item_id": "product_title", "grade": "median_relevance"},
        item_columns={"item_id": "product_title", "title": "product_title",
                      "description": "product_description"},
    )
    counts = _ingest([spec], tmp_path / "out")
    j = pl.read_parquet(tmp_path / "out" / "judgements.parquet")
    items = pl.read_parquet(tmp_path / "out" / "items.parquet")
    assert counts["judgements"]["kept"] == 3 and j["grade"].to_list() == [4.0, 1.0, 3.0]
    assert j["query"].to_list()[2] == "BLUE mug"  # whitespace collapsed
    assert items.filter(pl.col("item_id") == "<b>Acme Kettle</b> Red")["title"][0] == "Acme Kettle Red"
    assert items.filter(pl.col("title") == "Acme Kettle Red")["description"][0] == "A kettle & more"
    assert items.filter(pl.col("title") == "Mugsy Mug")["description"][0] == "mug"  # NFKC


def test_events_jsonl_checks_and_privacy(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(r) for r in [
        {"item_id": "i1", "title": "Kettle", "price": "19.5"},
        {"item_id": "i2", "title": "Mug", "price": -1},
        {"item_id": "i1", "title": "Kettle again"},
    ]) + "\n")
    ev = tmp_path / "events.jsonl"
    rows = [
        {"user": "alice@example.com", "sess": "s1", "item": "i1", "type": "click", "ts": "2026-01-01T10:00:00Z"},
        {"user": "alice@example.com", "sess": "s1", "item": None, "type": "search", "ts": "2026-01-01T10:00:01Z",
         "q": "kettle for bob@example.com +1 (555) 123-4567"},
        {"user": "bob", "sess": "s2", "item": "i9", "type": "view", "ts": "2026-01-01T10:00:02Z"},
        {"user": "bob", "sess": "s2", "item": "i1", "type": "teleport", "ts": "2026-01-01T10:00:03Z"},
        {"user": "bob", "sess": "s2", "item": "i1", "type": "view", "ts": "1970-01-02T00:00:00Z"},
        {"user": "bob", "sess": "s2", "item": "i1", "type": "view", "ts": "yesterday"},
        {"user": "alice@example.com", "sess": "s1", "item": "i1", "type": "click", "ts": "2026-01-01T10:00:00Z"},
    ]
    ev.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken json\n")
    specs = [
        build_spec("jsonl", [str(items)], table="items"),
        build_spec("jsonl", [str(ev)], table="events", columns={
            "user_id": "user", "session_id": "sess", "item_id": "item", "event_type": "type",
            "timestamp": "ts", "query": "q"}),
    ]
    out = tmp_path / "out"
    counts = _ingest(specs, out)
    q = pl.read_parquet(out / "quarantine.parquet")
    got = {(t, r): why for t, r, why in q.select("table", "row", "reason").iter_rows()}
    assert got == {
        ("items", 2): "bad_value", ("items", 3): "duplicate",
        ("events", 3): "unknown_item", ("events", 4): "bad_value",
        ("events", 5): "impossible_timestamp", ("events", 6): "bad_type",
        ("events", 7): "duplicate", ("events", 8): "malformed_row",
    }
    assert counts["events"] == {**counts["events"], "rows_in": 8, "kept": 2, "quarantined": 6}
    kept = pl.read_parquet(out / "events.parquet")
    assert kept["query"].drop_nulls().to_list() == ["kettle for <email> <phone>"]
    # no raw id or e-mail anywhere in the artifacts, quarantine included
    blob = b"".join(p.read_bytes() for p in out.glob("*.parquet"))
    text = q.write_csv() + kept.write_csv()
    for secret in ("alice@example.com", "bob@example.com", "555"):
        assert secret not in text
    assert b"alice@example.com" not in blob
    assert kept["user_id"][0] == kept["user_id"][1] and len(kept["user_id"][0]) == 16
    # written in the canonical schema, with statistics where readers filter and not on ids
    import pyarrow.parquet as pq

    from shelfops.tables import EVENTS

    meta = pq.ParquetFile(out / "events.parquet")
    assert meta.schema_arrow.remove_metadata().equals(EVENTS)
    cols = {meta.metadata.row_group(0).column(i).path_in_schema: meta.metadata.row_group(0).column(i)
            for i in range(meta.metadata.num_columns)}
    assert cols["timestamp"].is_stats_set and not cols["user_id"].is_stats_set
    assert cols["item_id"].has_dictionary_page and not cols["request_id"].has_dictionary_page
    # row numbers and times, which grow through the table, as deltas; text not
    assert "DELTA_BINARY_PACKED" in cols["seq"].encodings and "DELTA_BINARY_PACKED" in cols["timestamp"].encodings
    assert "DELTA_BINARY_PACKED" not in cols["user_id"].encodings


def test_bot_sessions_are_quarantined(tmp_path):
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [("human", "h", f"i{k % 3}", t0 + timedelta(minutes=k)) for k in range(60)]
    rows += [("bot", "b", f"i{k % 3}", t0 + timedelta(seconds=k)) for k in range(60)]
    df = pl.DataFrame(rows, schema=["user_id", "session_id", "item_id", "timestamp"], orient="row")
    df = df.with_columns(pl.lit("view").alias("event_type"))
    f = tmp_path / "ev.parquet"
    df.write_parquet(f)
    counts = _ingest([build_spec("parquet", [str(f)], table="events")], tmp_path / "out",
                     bot_max_events_per_minute=30, bot_min_events=50)
    assert counts["events"]["by_reason"] == {"bot_session": 60}
    assert counts["events"]["kept"] == 60


@pytest.mark.parametrize("budget", [0, 20_000, Hashes.BUDGET])
def test_duplicates_are_rows_whose_hash_an_earlier_row_had(tmp_path, budget):
    """Across batches and within one: the first copy kept, every later one flagged, as a set of
    seen hashes grown row by row would say; decided bucket by bucket, whether the buckets were
    spilled to scratch every batch, now and then, or held in memory throughout."""
    import numpy as np

    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 5000, size=300).astype(np.uint64) for _ in range(40)]
    seen: set[int] = set()
    want = []
    for x in np.concatenate(batches).tolist():
        want.append(x in seen)
        seen.add(x)
    spill = Hashes(tmp_path, "events")
    spill.budget = budget
    files = set()
    for b in batches:
        spill.add(b)
        files |= set(tmp_path.iterdir())
    assert bool(files) == (budget < Hashes.BUDGET)
    got = np.zeros(len(want), dtype=bool)
    got[spill.duplicates()] = True
    assert got.tolist() == want and sum(want) > 1000
    assert list(tmp_path.iterdir()) == []  # the spilled buckets are gone once decided
    assert Hashes(tmp_path, "judgements").duplicates().tolist() == []


def test_reject_ratio_makes_cli_fail(tmp_path):
    from typer.testing import CliRunner

    from shelfops.cli.main import app

    f = tmp_path / "j.csv"
    f.write_text("query,item,grade\n" + "".join(f"q{i},i{i},bad\n" for i in range(8))
                 + "q,i,1\nq2,i2,2\n")
    res = CliRunner().invoke(app, [
        "data", "ingest", "--format", "csv", "--table", "judgements", "--map", "item_id=item",
        str(f), "--out", str(tmp_path / "out"), "--no-progress", "data.cleaning.max_reject_ratio=0.5",
    ])
    assert res.exit_code == 3, res.output
    assert "80.0% > 50.0%" in res.output
    from shelfops.artifacts import read_manifest

    m = read_manifest(tmp_path / "out")
    assert m.extra["status"] == "rejected" and m.counts["judgements"]["quarantined"] == 8


@pytest.mark.parametrize("content,problem", [
    (b"", "file is empty"),
    (b"a,c\n1,2\n", r"column\(s\) \['grade'\] named in the column mapping are not in the file"),
    (b"a,,c\n1,2,3\n", "header line has empty column names"),
])
def test_unreadable_file_is_named(tmp_path, content, problem):
    from shelfops.errors import SourceReadError

    f = tmp_path / "x.csv"
    f.write_bytes(content)
    spec = build_spec("csv", [str(f)], table="judgements",
                      columns={"query": "a", "item_id": "c", "grade": "grade"})
    with pytest.raises(SourceReadError, match=problem) as e:
        _ingest([spec], tmp_path / "out")
    assert str(f) in str(e.value)


def test_a_folder_of_parquet_parts_is_one_source_cut_into_row_group_units(tmp_path):
    """Partitioned Parquet (as Spark, Ray Data or the ray engine write it) reads as one source;
    the ray engine's units cut it at row groups, numbered as in each whole file, and together
    read every row once."""
    from shelfops.data.sources import read_unit, source_files, source_units

    parts = tmp_path / "events"
    parts.mkdir()
    for p in range(2):
        pl.DataFrame({"user_id": [f"u{p}-{k}" for k in range(2500)], "session_id": "s", "item_id": "i1",
                      "event_type": "view"}).write_parquet(parts / f"part-{p}.parquet", row_group_size=400)
    (parts / "_SUCCESS").write_text("")
    spec = build_spec("parquet", [str(parts)], table="events")
    assert [p.rsplit("/", 1)[1] for p in source_files(spec)] == ["part-0.parquet", "part-1.parquet"]
    units = source_units(spec, 1000)
    assert [(u.path.rsplit("/", 1)[1], u.first_row) for u in units] == [
        ("part-0.parquet", 1), ("part-0.parquet", 1201), ("part-0.parquet", 2401),
        ("part-1.parquet", 1), ("part-1.parquet", 1201), ("part-1.parquet", 2401)]
    got = [(b.file.rsplit("/", 1)[1], r, u) for unit in units for b in read_unit(spec, unit, 1000)
           for r, u in zip(b.rows, b.df["user_id"])]
    want = [(f"part-{p}.parquet", k + 1, f"u{p}-{k}") for p in range(2) for k in range(2500)]
    assert got == want
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,Kettle\n")
    counts = _ingest([build_spec("csv", [str(items)], table="items"), spec], tmp_path / "out")
    assert counts["events"]["kept"] == 5000 and set(counts["events"]["files"]) == set(source_files(spec))


@pytest.mark.parametrize("key", [b"k" * 16, b"k" * 64, b"a longer key than one SHA-256 block, " * 3])
def test_keyed_hasher_gives_hmac_sha256_of_each_id(key):
    """The precomputed-key hasher ingest uses is HMAC-SHA256 truncated to 16 hex characters, for
    keys shorter than, as long as, and longer than the hash's block (those are hashed first)."""
    import hashlib
    import hmac

    from shelfops.data.privacy import keyed_hasher, pseudonymise

    one = keyed_hasher(key)
    for value in ["u1", "", "ünïcode-€", "x" * 300]:
        want = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]
        assert one(value) == pseudonymise(value, key) == want


@pytest.mark.parametrize("key", [b"k" * 16, b"k" * 64, b"a longer key than one SHA-256 block, " * 3,
                                 "kéy with ünicode text".encode(), b"\xff\xfe not UTF-8 at all"])
def test_column_hasher_gives_the_same_pseudonyms_as_one_id_at_a_time(key):
    """Ingest hashes whole columns in native code; serving and the one-id API hash in Python:
    a user must get the same pseudonym from both, and nulls stay null (keys that are not text
    take the per-id path)."""
    import hashlib
    import hmac

    import polars as pl

    from shelfops.data.privacy import keyed_column_hasher
    from shelfops.data.validate import Pseudonymiser

    values = ["u1", "", "ünïcode-€", "x" * 300, None, "u1"]
    want = [None if v is None else hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:16] for v in values]
    got = keyed_column_hasher(key)(pl.Series("user_id", values))
    assert got.name == "user_id" and got.dtype == pl.String and got.to_list() == want
    assert Pseudonymiser(key).column(pl.Series("user_id", values)).to_list() == want


def test_text_memo_types_each_value_once_across_batches_and_keys_by_rules():
    """Text typed in an earlier batch is taken from the memo (only new values are computed),
    the results are what computing them gives, rules that change the result are separate
    entries, and a full memo is emptied rather than grown."""
    from shelfops.data.validate import TextMemo

    memo, seen = TextMemo(limit=5), []

    def upper(d: pl.Series) -> pl.Series:
        seen.append(d.to_list())
        return d.str.to_uppercase()

    key = (pl.String, "query", True, True)
    assert memo.typed(key, pl.Series("q", ["a", "b"]), upper).to_list() == ["A", "B"]
    assert memo.typed(key, pl.Series("q", ["b", "c", "a"]), upper).to_list() == ["B", "C", "A"]
    assert seen == [["a", "b"], ["c"]]
    other = (pl.String, "query", True, False)  # other rules: not the same entry
    assert memo.typed(other, pl.Series("q", ["a"]), lambda d: d + "!").to_list() == ["a!"]
    assert memo.size == 4
    memo.typed(key, pl.Series("q", ["d", "e"]), upper)  # 6 > 5: emptied, then these two kept
    assert memo.size == 2 and seen[-1] == ["d", "e"]
    assert memo.typed(key, pl.Series("q", ["a", "e"]), upper).to_list() == ["A", "E"] and seen[-1] == ["a"]


def test_memo_gives_the_typing_of_each_batch_alone(tmp_path):
    """Ingest with the memo warm from another run (other cleaning rules) types queries exactly
    as a cold run: the memo is keyed by what decides the result."""
    from shelfops.data import validate

    f = tmp_path / "e.csv"
    f.write_text("user_id,event_type,query\n" + "".join(
        f"u{i},search,  <b>Mail</b> me at bob{i % 3}@example.com \n" for i in range(30)))
    spec = build_spec("csv", [str(f)], table="events")
    validate.TEXT_MEMO.values.clear()
    _ingest([spec], tmp_path / "cold", strip_html=False)
    validate.TEXT_MEMO.values.clear()
    _ingest([spec], tmp_path / "warm-other", strip_html=True)
    _ingest([spec], tmp_path / "warm", strip_html=False)
    cold, warm, other = (pl.read_parquet(tmp_path / d / "events.parquet")["query"]
                         for d in ("cold", "warm", "warm-other"))
    assert cold.to_list() == warm.to_list() and "<b>" in cold[0] and "<email>" in cold[0]
    assert "<b>" not in other[0] and "<email>" in other[0]


def test_staged_batches_read_in_place_stay_whole_after_their_pages_are_dropped(tmp_path):
    """Pass two reads its stage memory-mapped and drops the pages of batches it has handed on:
    batches kept by a consumer (the writer's queue) still read as staged."""
    import pyarrow as pa

    from shelfops.data.scratch import Stage

    st = Stage(tmp_path / "s.arrow")
    parts = [pl.DataFrame({"i": list(range(k * 1000, (k + 1) * 1000)), "s": [f"v{k}-{j}" * 20 for j in range(1000)]})
             for k in range(40)]
    for part in parts:
        st.add(part)
    st.close()
    got = list(st.batches(3000))  # all kept while later pages are dropped
    assert [t.num_rows for t in got] == [3000] * 13 + [1000]
    whole = pa.concat_tables(got)
    assert whole.schema.field("s").type == pa.string()  # staged with 32-bit offsets
    assert whole.equals(pl.concat(parts).to_arrow().cast(whole.schema))
    assert list(Stage(tmp_path / "never-written.arrow").batches(10)) == []


def test_a_staged_batch_with_more_text_than_32_bit_offsets_hold_is_written_in_parts(tmp_path):
    import pyarrow as pa

    from shelfops.data.scratch import Stage

    st = Stage(tmp_path / "s.arrow")
    st.max_column_bytes = 5_000  # as if 2 GiB: 1,000 rows of ~21 bytes do not fit in one batch
    part = pl.DataFrame({"i": list(range(1000)), "s": [f"value-{j:05d}-{'x' * 8}" for j in range(1000)]})
    st.add(part)
    st.close()
    with pa.ipc.open_file(str(tmp_path / "s.arrow")) as f:
        sizes = [f.get_batch(k).num_rows for k in range(f.num_record_batches)]
    assert sizes == [125] * 8  # halved until each part's text fits (each 1,000-row half ~15 kB)
    assert st.read().equals(part)


def test_quarantine_writes_rows_and_made_rows_in_order_and_counts_them_at_close(tmp_path):
    from shelfops.data.scratch import Ledger, Quarantine

    def rows(rs, reason):
        return pl.DataFrame({"table": "events", "file": "f.csv", "row": rs, "column": "x",
                             "reason": reason, "detail": "d", "raw": "{}"})

    ledger = Ledger()
    q = Quarantine(tmp_path / "q.parquet", ledger)
    q.add(rows([1, 2], "bad_value"))
    q.add(lambda: rows([3], "duplicate"))  # made on the writer thread
    q.add(lambda: rows([], "duplicate"))
    q.add(rows([4], "bad_value"))
    q.close()
    assert pl.read_parquet(tmp_path / "q.parquet")["row"].to_list() == [1, 2, 3, 4]
    assert dict(ledger.rejected) == {("events", "f.csv", "bad_value"): 3, ("events", "f.csv", "duplicate"): 1}
    empty = Quarantine(tmp_path / "none.parquet", Ledger())
    empty.close()
    assert pl.read_parquet(tmp_path / "none.parquet").columns == ["table", "file", "row", "column", "reason",
                                                                   "detail", "raw"]


def test_a_parquet_file_that_fails_to_decode_is_named(tmp_path):
    """Decoding happens as batches are read (polars' streaming reader): a damaged page is a
    SourceReadError naming the file, not a crash."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shelfops.errors import SourceReadError

    f = tmp_path / "events.parquet"
    pq.write_table(pa.table({"user_id": [f"u{i}" for i in range(50_000)],
                             "event_type": ["view"] * 50_000}), f, compression="snappy", use_dictionary=False)
    raw = bytearray(f.read_bytes())
    mid = len(raw) // 3
    raw[mid:mid + 64] = b"\xff" * 64  # inside the first column's data pages, the footer intact
    f.write_bytes(bytes(raw))
    with pytest.raises(SourceReadError) as e:
        _ingest([build_spec("parquet", [str(f)], table="events")], tmp_path / "out")
    assert str(f) in str(e.value)


@pytest.mark.parametrize("size", [3, 50])  # a set smaller than the batch, and one larger
def test_members_finds_the_rows_in_and_not_in_a_set_either_way(size):
    """Pass two's look-ups (unknown items, bots' sessions): per row, in or not in the set, nulls
    in neither, whether the set is asked directly (smaller than the batch) or through the
    batch's distinct values (larger)."""
    import pyarrow as pa

    from shelfops.data.ingest import Members

    values = [f"i{k}" for k in range(size)]
    m = Members(pl.Series(values))
    col = pa.chunked_array([["i1", None, "x", "i2", "i1"], ["y", "i0"]], pa.large_string())
    want_in = [v is not None and v in values for v in col.to_pylist()]
    want_out = [v is not None and v not in values for v in col.to_pylist()]
    assert m.rows(col, inside=True).tolist() == want_in
    assert m.rows(col, inside=False).tolist() == want_out
    assert sorted(m.among(pl.Series(["i1", "x", "i1", None])).explode().to_list()) == ["i1"]
