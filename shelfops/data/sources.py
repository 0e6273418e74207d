"""Loaders: every supported format streamed as batches of canonical-named raw columns.

A loader does no validation beyond what it takes to split a file into rows: it yields
:class:`RawBatch` objects (string columns named as the canonical table, with the 1-based
row number of each row in its file) and :class:`Rejects` for rows it could not even parse
(wrong number of fields, bad JSON, undecodable bytes). ``shelfops.data.ingest`` validates.

Known public formats are presets of the generic reader (Home Depot, Diginetica) or
readers of their own (the Amazon 5-core sequence files of S3-Rec).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shelfops.errors import SourceReadError
from shelfops.tables import QUARANTINE, Reason

Transform = Callable[[pl.DataFrame], pl.DataFrame]


@dataclass
class SourceSpec:
    """Plain description of one input file set (built from ``SourceConfig``)."""

    format: str  # csv | tsv | parquet | jsonl | amazon
    paths: list[str]
    table: str  # items | events | judgements
    columns: dict[str, str] = field(default_factory=dict)  # canonical -> file column
    item_columns: dict[str, str] = field(default_factory=dict)
    encoding: str = "utf-8"
    delimiter: str = ","
    defaults: dict[str, object] = field(default_factory=dict)
    transform: Transform | None = None  # runs on the renamed raw frame (presets)
    timestamp_format: str | None = None


@dataclass
class RawBatch:
    table: str
    file: str
    rows: pl.Series  # int64, 1-based data row number in the file
    df: pl.DataFrame  # canonical column names (mostly strings)
    items: pl.DataFrame | None = None  # item columns carried by the same rows


@dataclass
class Rejects:
    """Rows a loader could not parse: already quarantine-shaped."""

    df: pl.DataFrame


def reject_frame(
    table: str, file: str, rows: list[int | None], columns: list[str | None], reason: str,
    details: list[str | None], raws: list[str | None],
) -> pl.DataFrame:
    n = len(rows)
    return pl.DataFrame(
        {
            "table": [table] * n, "file": [file] * n, "row": rows, "column": columns,
            "reason": [reason] * n, "detail": details, "raw": raws,
        },
        schema=pl.Schema(pl.from_arrow(QUARANTINE.empty_table()).schema),
    )


# --------------------------------------------------------------------------- presets


def _diginetica_transform(df: pl.DataFrame) -> pl.DataFrame:
    """session_id;user_id;item_id;timeframe;eventdate -> canonical events (views)."""
    date = df["eventdate"].str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
    frame = df["timeframe"].str.strip_chars().cast(pl.Int64, strict=False)
    ts = (date.cast(pl.Datetime("ms")) + pl.duration(milliseconds=frame)).dt.replace_time_zone("UTC")
    out = df.select(
        pl.col("session_id"),
        pl.when(pl.col("user_id").str.strip_chars().is_in(["NA", ""])).then(None)
        .otherwise(pl.col("user_id")).alias("user_id"),
        pl.col("item_id"),
        pl.lit("view").alias("event_type"),
    ).with_columns(ts.alias("timestamp") if len(df) else pl.lit(None, pl.Datetime("ms", "UTC")).alias("timestamp"))
    # name the raw part that failed, so the quarantine points at the file's own column
    err = (
        pl.when(date.is_null() & df["eventdate"].is_not_null()).then(pl.lit("eventdate"))
        .when(frame.is_null() & df["timeframe"].is_not_null()).then(pl.lit("timeframe"))
        .otherwise(None)
    )
    return out.with_columns(
        df["timeframe"].alias("timeframe"), df["eventdate"].alias("eventdate"),
        pl.select(err.alias("_error_column")).to_series() if len(df) else pl.Series("_error_column", [], pl.String),
    ).with_columns(
        (pl.lit("cannot read ") + pl.col("_error_column") + pl.lit(" as a date / milliseconds")).alias("_error_detail")
    )


PRESETS: dict[str, dict] = {
    # Kaggle Home Depot Product Search Relevance train.csv (Latin-1 / cp1252)
    "homedepot": dict(
        format="csv", table="judgements", encoding="cp1252", delimiter=",",
        columns={"query": "search_term", "item_id": "product_uid", "grade": "relevance"},
        item_columns={"item_id": "product_uid", "title": "product_title"},
    ),
    # DIGINETICA (CIKM Cup 2016) train-item-views.csv
    "diginetica": dict(
        format="csv", table="events", delimiter=";",
        columns={"session_id": "session_id", "user_id": "user_id", "item_id": "item_id",
                 "timeframe": "timeframe", "eventdate": "eventdate"},
        transform=_diginetica_transform,
    ),
}


def build_spec(
    format: str, paths: list[str], *, table: str | None = None,
    columns: dict[str, str] | None = None, item_columns: dict[str, str] | None = None,
    encoding: str | None = None, delimiter: str | None = None,
    defaults: dict[str, object] | None = None, timestamp_format: str | None = None,
) -> SourceSpec:
    if format in PRESETS:
        base = dict(PRESETS[format])
        if columns:
            base["columns"] = {**base["columns"], **columns}
        if item_columns:
            base["item_columns"] = {**base["item_columns"], **item_columns}
        if encoding and encoding != "utf-8":
            base["encoding"] = encoding
        return SourceSpec(paths=paths, defaults=dict(defaults or {}), **base)
    if format == "amazon":
        return SourceSpec(format="amazon", paths=paths, table="events")
    if table is None:
        raise ValueError(f"format {format!r} needs a table")
    delim = delimiter or ("\t" if format == "tsv" else ",")
    return SourceSpec(
        format=format, paths=paths, table=table, columns=dict(columns or {}),
        item_columns=dict(item_columns or {}), encoding=encoding or "utf-8", delimiter=delim,
        defaults=dict(defaults or {}), timestamp_format=timestamp_format,
    )


def spec_from_config(src) -> SourceSpec:  # src: shelfops.config.schema.SourceConfig
    return build_spec(
        src.format, list(src.paths), table=src.table, columns=src.columns,
        item_columns=src.item_columns, encoding=src.encoding, delimiter=src.delimiter,
        defaults=src.defaults, timestamp_format=src.timestamp_format,
    )


# --------------------------------------------------------------------------- helpers


def _decode_column(
    arr: pa.Array, encoding: str,
) -> tuple[pl.Series, list[int]]:
    """Decode a binary column; returns (strings, indexes of undecodable values)."""
    if encoding.lower().replace("-", "") in ("utf8", "utf"):
        try:
            return pl.from_arrow(arr.cast(pa.string())), []
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # slow path below finds the bad values
    out: list[str | None] = []
    bad: list[int] = []
    for i, v in enumerate(arr.to_pylist()):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(v.decode(encoding))
        except UnicodeDecodeError:
            out.append(None)
            bad.append(i)
    return pl.Series(out, dtype=pl.String), bad


def _raw_json(values: dict[str, object]) -> str:
    return json.dumps(
        {k: (v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v)
         for k, v in values.items()},
        default=str, ensure_ascii=False,
    )


def _rename(df: pl.DataFrame, spec: SourceSpec, path: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Map file columns onto canonical names; split off item columns."""
    missing = sorted(
        {src for src in [*spec.columns.values(), *spec.item_columns.values()] if src not in df.columns}
    )
    if missing:
        raise SourceReadError(
            path, f"column(s) {missing} named in the column mapping are not in the file "
            f"(its columns: {df.columns})"
        )
    mapped_sources = set(spec.columns.values())
    main = df.select(
        [pl.col(src).alias(canon) for canon, src in spec.columns.items()]
        + [pl.col(c) for c in df.columns if c not in mapped_sources and c not in spec.columns]
    )
    items = None
    if spec.item_columns:
        items = df.select([pl.col(src).alias(canon) for canon, src in spec.item_columns.items()])
    for k, v in spec.defaults.items():
        if k not in main.columns:
            main = main.with_columns(pl.lit(v).cast(pl.String).alias(k))
    if spec.transform is not None:
        main = spec.transform(main)
    return main, items


def _check_readable(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise SourceReadError(path, "file not found")
    if not p.is_file():
        raise SourceReadError(path, "not a regular file")
    if p.stat().st_size == 0:
        raise SourceReadError(path, "file is empty")
    return p


# --------------------------------------------------------------------------- readers


def _header(path: str, spec: SourceSpec) -> list[str]:
    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        text = first.decode(spec.encoding).lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise SourceReadError(path, f"header line is not valid {spec.encoding}: {e}") from e
    names = next(csv.reader([text], delimiter=spec.delimiter))
    if not names or any(not n.strip() for n in names):
        raise SourceReadError(path, f"header line has empty column names: {text[:200]!r}")
    if len(set(names)) != len(names):
        raise SourceReadError(path, f"header line repeats a column name: {names}")
    return names


def read_delimited(spec: SourceSpec, path: str, batch_rows: int) -> Iterator[RawBatch | Rejects]:
    """CSV/TSV, streamed by pyarrow as bytes; decoding per column so one bad value
    quarantines one row, not the file."""
    _check_readable(path)
    bad_lines: dict[int, str] = {}

    def on_invalid(row) -> str:
        bad_lines[row.number] = f"{row.actual_columns} fields where {row.expected_columns} expected|{row.text}"
        return "skip"

    names = _header(path, spec)
    try:
        reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=False, block_size=8 << 20),
        parse_options=pacsv.ParseOptions(
            delimiter=spec.delimiter, invalid_row_handler=on_invalid, newlines_in_values=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.binary() for n in names}, strings_can_be_null=False,
        ),
        )
    except (pa.ArrowInvalid, OSError) as e:
        raise SourceReadError(path, f"not a readable {spec.format.upper()} file: {e}") from e
    if reader.schema.names != names:
        raise SourceReadError(path, f"header {reader.schema.names} does not parse as {names}")
    line = 1  # physical line of the header
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush(batches: list[pa.RecordBatch], first_line: int) -> tuple[list[RawBatch | Rejects], int]:
        tbl = pa.Table.from_batches(batches)
        n = tbl.num_rows
        # physical line numbers of these rows: skip the lines the parser rejected
        lines: list[int] = []
        ln = first_line
        while len(lines) < n:
            ln += 1
            if ln not in bad_lines:
                lines.append(ln)
        cols: dict[str, pl.Series] = {}
        undecodable: dict[int, str] = {}
        for name in names:
            s, bad = _decode_column(tbl.column(name).combine_chunks(), spec.encoding)
            cols[name] = s
            for i in bad:
                undecodable.setdefault(i, name)
        out: list[RawBatch | Rejects] = []
        rows = pl.Series("row", [x - 1 for x in lines], dtype=pl.Int64)
        df = pl.DataFrame(cols)
        if undecodable:
            idx = sorted(undecodable)
            raws = [
                _raw_json({nm: tbl.column(nm)[i].as_py() for nm in names}) for i in idx
            ]
            out.append(Rejects(reject_frame(
                spec.table, path, [int(rows[i]) for i in idx], [undecodable[i] for i in idx],
                Reason.undecodable.value,
                [f"bytes not valid {spec.encoding} in column {undecodable[i]!r}" for i in idx], raws,
            )))
            keep = pl.Series([i not in undecodable for i in range(n)])
            df, rows = df.filter(keep), rows.filter(keep)
        main, items = _rename(df, spec, path)
        out.append(RawBatch(spec.table, path, rows, main, items))
        return out, lines[-1] if lines else first_line

    try:
        for rb in reader:
            pending.append(rb)
            pending_rows += rb.num_rows
            if pending_rows >= batch_rows:
                produced, line = flush(pending, line)
                yield from produced
                pending, pending_rows = [], 0
        if pending:
            produced, line = flush(pending, line)
            yield from produced
    except pa.ArrowInvalid as e:
        raise SourceReadError(path, f"CSV parse error: {e}") from e
    if bad_lines:
        nums = sorted(bad_lines)
        info = [bad_lines[k].split("|", 1) for k in nums]
        yield Rejects(reject_frame(
            spec.table, path, [k - 1 for k in nums], [None] * len(nums), Reason.malformed_row.value,
            [i[0] for i in info], [json.dumps({"line": i[1]}, ensure_ascii=False) for i in info],
        ))


def _parquet_file(path: str) -> pq.ParquetFile:
    _check_readable(path)
    try:
        # pre_buffer off: pyarrow keeps what it pre-buffered until the file's last batch is read
        # (memory grew by ~20 MB a million rows, 1.4 GB after 60M events); read as batches go
        return pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as e:
        raise SourceReadError(path, f"not a readable Parquet file: {e}") from e


def read_parquet(spec: SourceSpec, path: str, batch_rows: int,
                 part: Unit | None = None) -> Iterator[RawBatch | Rejects]:
    """A Parquet file's rows, or only ``part``'s row groups (numbered as in the whole file).

    Decoded by polars' streaming reader straight into polars' own string layout: decoding 10M
    events and converting them took 2.4 CPU-s with pyarrow's reader, 0.6 with this one (the
    file is still opened with pyarrow first, for its metadata and a clear error)."""
    pf = _parquet_file(path)
    lf = pl.scan_parquet(path)
    start = 1
    if part is not None:
        lf = lf.slice(part.first_row - 1, sum(pf.metadata.row_group(g).num_rows for g in part.row_groups or ()))
        start = part.first_row
    try:
        for df in lf.collect_batches(chunk_size=batch_rows):
            rows = pl.Series("row", range(start, start + len(df)), dtype=pl.Int64)
            start += len(df)
            main, items = _rename(df, spec, path)
            yield RawBatch(spec.table, path, rows, main, items)
    except pl.exceptions.PolarsError as e:
        raise SourceReadError(path, f"not a readable Parquet file: {e}") from e


def read_jsonl(spec: SourceSpec, path: str, batch_rows: int) -> Iterator[RawBatch | Rejects]:
    _check_readable(path)
    records: list[dict] = []
    rownums: list[int] = []
    bad: list[tuple[int, str, str]] = []

    def emit() -> Iterator[RawBatch]:
        df = pl.DataFrame(
            [{k: (None if v is None else (v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else str(v))) for k, v in r.items()} for r in records],
            infer_schema_length=None,
        ) if records else pl.DataFrame()
        if df.width:
            main, items = _rename(df, spec, path)
            yield RawBatch(spec.table, path, pl.Series("row", rownums, dtype=pl.Int64), main, items)

    with open(path, "rb") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line.decode(spec.encoding))
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except UnicodeDecodeError:
                bad.append((i, Reason.undecodable.value, line.decode("utf-8", "backslashreplace")))
                continue
            except ValueError as e:
                bad.append((i, Reason.malformed_row.value + f"|{e}", line.decode("utf-8", "backslashreplace")))
                continue
            records.append(obj)
            rownums.append(i)
            if len(records) >= batch_rows:
                yield from emit()
                records, rownums = [], []
    yield from emit()
    for reason in (Reason.undecodable.value, Reason.malformed_row.value):
        sel = [b for b in bad if b[1].split("|")[0] == reason]
        if sel:
            yield Rejects(reject_frame(
                spec.table, path, [b[0] for b in sel], [None] * len(sel), reason,
                [b[1].split("|", 1)[1] if "|" in b[1] else "invalid bytes" for b in sel],
                [json.dumps({"line": b[2].rstrip()}, ensure_ascii=False) for b in sel],
            ))


# ---- Amazon 5-core (S3-Rec preprocessing): Beauty.txt + _item_titles.tsv + _item2attributes.json

_AMAZON_SEQ = re.compile(r"^\S+(\s+\S+)*$")


def amazon_files(paths: list[str]) -> tuple[str, str | None, str | None]:
    """Find the sequence file, and the titles/attributes files beside it."""
    seq = titles = attrs = None
    for p in paths:
        if p.endswith("_item_titles.tsv"):
            titles = p
        elif p.endswith("_item2attributes.json"):
            attrs = p
        else:
            seq = p
    if seq is None:
        raise SourceReadError(",".join(paths), "no sequence file (user_id item_1 ... item_n)")
    stem = Path(seq).with_suffix("")
    if titles is None and Path(f"{stem}_item_titles.tsv").exists():
        titles = f"{stem}_item_titles.tsv"
    if attrs is None and Path(f"{stem}_item2attributes.json").exists():
        attrs = f"{stem}_item2attributes.json"
    return seq, titles, attrs


def read_amazon_items(titles: str | None, attrs: str | None) -> Iterator[RawBatch | Rejects]:
    """Items of the Amazon set: ids and titles from the TSV, attribute ids from the JSON."""
    if titles is None:
        return
    spec = SourceSpec(format="tsv", paths=[titles], table="items", delimiter="\t",
                      columns={"item_id": "item_id", "title": "title"})
    attr_map: dict[str, str] = {}
    if attrs is not None:
        _check_readable(attrs)
        try:
            raw = json.loads(Path(attrs).read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise SourceReadError(attrs, f"not valid JSON: {e}") from e
        attr_map = {str(k): json.dumps({"attribute_ids": v}) for k, v in raw.items()}
    for b in read_delimited(spec, titles, 1_000_000):
        if isinstance(b, RawBatch):
            b.df = b.df.drop([c for c in b.df.columns if c not in ("item_id", "title")])
            if attr_map:
                b.df = b.df.with_columns(
                    pl.col("item_id").replace_strict(attr_map, default=None, return_dtype=pl.String)
                    .alias("attributes")
                )
        yield b


def read_amazon_sequences(spec: SourceSpec, path: str, batch_rows: int) -> Iterator[RawBatch | Rejects]:
    """One line per user: ``user_id item_1 ... item_n``, chronological; one event per item.

    Row numbers are line numbers; the column names the position (``item[3]``). A last line
    with no line terminator is treated as truncated (its last id may be cut) and quarantined.
    """
    _check_readable(path)
    users: list[str] = []
    items: list[str | None] = []
    lines: list[int] = []
    pos: list[int] = []
    errors: list[str | None] = []
    rejects: list[tuple[int, str | None, str, str, str]] = []
    with open(path, "rb") as fh:
        for nline, raw in enumerate(fh, start=1):
            toks = raw.split()
            if not toks:
                continue
            text = raw.decode("utf-8", "backslashreplace").rstrip()
            truncated = not raw.endswith(b"\n")
            if truncated or len(toks) < 2:
                why = ("last line has no line terminator: the file looks truncated" if truncated
                       else "a user line needs a user id and at least one item")
                for k in range(1, max(len(toks), 2)):
                    rejects.append((nline, f"item[{k}]", Reason.malformed_row.value, why, text))
                continue
            try:
                u = toks[0].decode("utf-8")
            except UnicodeDecodeError:
                for k in range(1, len(toks)):
                    rejects.append((nline, "user_id", Reason.undecodable.value,
                                    "user id bytes not valid utf-8", text))
                continue
            for k, tok in enumerate(toks[1:], start=1):
                try:
                    it: str | None = tok.decode("utf-8")
                except UnicodeDecodeError:
                    rejects.append((nline, f"item[{k}]", Reason.undecodable.value,
                                    "item id bytes not valid utf-8", text))
                    continue
                users.append(u)
                items.append(it)
                lines.append(nline)
                pos.append(k)
                errors.append(None if it.isdigit() else f"item[{k}]")
            if len(users) >= batch_rows:
                yield _amazon_batch(path, users, items, lines, pos, errors)
                users, items, lines, pos, errors = [], [], [], [], []
    if users:
        yield _amazon_batch(path, users, items, lines, pos, errors)
    if rejects:
        yield Rejects(reject_frame(
            "events", path, [r[0] for r in rejects], [r[1] for r in rejects], rejects[0][2],
            [r[3] for r in rejects], [json.dumps({"line": r[4]}, ensure_ascii=False) for r in rejects],
        ).with_columns(pl.Series("reason", [r[2] for r in rejects])))


def _amazon_batch(path: str, users, items, lines, pos, errors) -> RawBatch:
    df = pl.DataFrame({
        "user_id": users, "session_id": users, "item_id": items,
        "event_type": ["purchase"] * len(users),
        # a user may buy an item twice: the position in the line keeps repeats distinct,
        # while a repeated line is still caught as a duplicate
        "_dedupe_key": pos,
        "_error_column": errors,
    }, schema_overrides={"_error_column": pl.String}).with_columns(
        (pl.lit("item id ") + pl.col("item_id") + pl.lit(" is not an integer id")).alias("_error_detail")
    )
    return RawBatch("events", path, pl.Series("row", lines, dtype=pl.Int64), df)


def source_files(spec: SourceSpec) -> list[str]:
    """The files of a source: its paths, a folder standing for the files in it (partitioned
    Parquet as Spark, Ray Data or shelfops' own ray engine write it: ``*.parquet`` below it,
    in name order; other formats: the regular files in it, hidden ones left out)."""
    out: list[str] = []
    for path in spec.paths:
        p = Path(path)
        if not p.is_dir():
            out.append(path)
            continue
        pattern = "**/*.parquet" if spec.format == "parquet" else "*"
        files = sorted(str(f) for f in p.glob(pattern) if f.is_file() and not f.name.startswith((".", "_")))
        if not files:
            raise SourceReadError(path, f"folder holds no {spec.format} files")
        out.extend(files)
    return out


@dataclass(frozen=True)
class Unit:
    """A piece of a source that one worker reads on its own: a whole file, or some of a
    Parquet file's row groups (``first_row``: the 1-based row number of their first row)."""

    path: str
    row_groups: tuple[int, ...] | None = None
    first_row: int = 1


def source_units(spec: SourceSpec, rows: int) -> list[Unit]:
    """The source cut into units of about ``rows`` rows at least, in the source's order:
    Parquet files at row-group boundaries, other formats whole files (a text file's rows are
    found only by reading it from the start)."""
    if spec.format == "amazon":
        raise SourceReadError(",".join(spec.paths), "the Amazon format is read as one unit (engine local)")
    units: list[Unit] = []
    for path in source_files(spec):
        if spec.format != "parquet":
            units.append(Unit(path))
            continue
        meta = _parquet_file(path).metadata
        groups: list[int] = []
        first = at = 1
        for g in range(meta.num_row_groups):
            groups.append(g)
            at += meta.row_group(g).num_rows
            if at - first >= rows:
                units.append(Unit(path, tuple(groups), first))
                groups, first = [], at
        if groups or not units or units[-1].path != path:
            units.append(Unit(path, tuple(groups), first))
    return units


def read_unit(spec: SourceSpec, unit: Unit, batch_rows: int) -> Iterator[RawBatch | Rejects]:
    """The batches of one unit, numbered as in its whole file."""
    if spec.format == "parquet":
        yield from read_parquet(spec, unit.path, batch_rows, unit)
    else:
        yield from _reader(spec)(spec, unit.path, batch_rows)


def _reader(spec: SourceSpec):
    reader = {"csv": read_delimited, "tsv": read_delimited, "parquet": read_parquet,
              "jsonl": read_jsonl}.get(spec.format)
    if reader is None:
        raise SourceReadError(",".join(spec.paths), f"unknown format {spec.format!r}")
    return reader


def iter_source(spec: SourceSpec, batch_rows: int) -> Iterator[RawBatch | Rejects]:
    """All batches of a source, items sources of the Amazon set first."""
    if spec.format == "amazon":
        seq, titles, attrs = amazon_files(spec.paths)
        yield from read_amazon_items(titles, attrs)
        yield from read_amazon_sequences(spec, seq, batch_rows)
        return
    reader = _reader(spec)
    for path in source_files(spec):
        yield from reader(spec, path, batch_rows)

