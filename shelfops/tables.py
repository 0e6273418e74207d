"""The canonical data model: three typed tables (plus the quarantine), stored as Parquet.

Every loader produces these columns; every later stage reads only these.

* **items**: one row per product.
* **events**: one row per behaviour event, in source order (``seq``). ``user_id`` and
  ``session_id`` are already pseudonymised when they reach a table.
* **judgements**: graded relevance of an item for a query (human or derived).
* **quarantine**: every rejected row with file, row number, column and reason.
"""

from __future__ import annotations

from enum import Enum

import pyarrow as pa


class EventType(str, Enum):
    impression = "impression"
    view = "view"
    click = "click"
    add_to_cart = "add_to_cart"
    purchase = "purchase"
    search = "search"


EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)

CATEGORY_SEP = " > "  # category paths are stored as "Bath > Faucets > Kitchen"

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("description", pa.string()),
        pa.field("category", pa.string()),  # path, levels joined by CATEGORY_SEP
        pa.field("brand", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("attributes", pa.string()),  # JSON object of attribute -> value
    ]
)

EVENTS = pa.schema(
    [
        pa.field("user_id", pa.string()),  # pseudonymised; null for anonymous sessions
        pa.field("session_id", pa.string()),  # pseudonymised
        pa.field("item_id", pa.string()),  # null for search events
        pa.field("event_type", pa.string(), nullable=False),  # one of EVENT_TYPES
        pa.field("query", pa.string()),  # PII-masked search text, when there is one
        pa.field("timestamp", pa.timestamp("ms", tz="UTC")),  # null when the source has none
        pa.field("seq", pa.int64(), nullable=False),  # order within the source
        pa.field("position", pa.int32()),  # rank at which the item was shown, when known
        pa.field("request_id", pa.string()),  # the served request the event belongs to
    ]
)

JUDGEMENTS = pa.schema(
    [
        pa.field("query", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("grade", pa.float64(), nullable=False),
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("row", pa.int64()),  # 1-based data row number in the file (header excluded)
        pa.field("column", pa.string()),  # the column at fault, when one is
        pa.field("reason", pa.string(), nullable=False),  # stable reason code
        pa.field("detail", pa.string()),
        pa.field("raw", pa.string()),  # the rejected row as JSON (ids pseudonymised)
    ]
)

TABLES: dict[str, pa.Schema] = {"items": ITEMS, "events": EVENTS, "judgements": JUDGEMENTS}

# Columns all but unique within a row group: a dictionary there is built and then given up
# for plain encoding (request_id's was 0.5 s of writing 10M events, and made the file larger;
# the quarantine's raw rows as JSON: 0.33 -> 0.24 s for 1M rows, the same size).
PLAIN_COLUMNS = frozenset({"request_id", "raw"})


def parquet_options(schema: pa.Schema) -> dict:
    """How a canonical table is written (``pq.ParquetWriter``/``write_table`` options): dictionary
    pages for repeating text; min/max statistics for the columns readers filter by (times and
    numbers: snapshots, time splits), not for ids and free text, whose ranges no reader can
    prune a row group by (writing them was a fifth of encoding the events)."""
    text = [f.name for f in schema if pa.types.is_string(f.type)]
    # row numbers and times grow through a table: stored as deltas, the events' seq is 0.1 MB
    # instead of 36 (10M events) and their times 7 instead of 21, each written and read faster
    deltas = {f.name: "DELTA_BINARY_PACKED" for f in schema
              if f.name == "seq" or pa.types.is_timestamp(f.type)}
    return {"use_dictionary": [c for c in text if c not in PLAIN_COLUMNS] or False,
            "write_statistics": [f.name for f in schema if f.name not in text] or False,
            **({"column_encoding": deltas} if deltas else {})}

REQUIRED: dict[str, tuple[str, ...]] = {
    "items": ("item_id",),
    "events": ("event_type",),
    "judgements": ("query", "item_id", "grade"),
}

# Reason codes written to the quarantine.
class Reason(str, Enum):
    missing_required = "missing_required"
    bad_type = "bad_type"
    bad_value = "bad_value"
    unknown_item = "unknown_item"
    duplicate = "duplicate"
    impossible_timestamp = "impossible_timestamp"
    undecodable = "undecodable"
    malformed_row = "malformed_row"
    bot_session = "bot_session"
