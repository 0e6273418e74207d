"""The one logging setup (shelfops.logs): JSON lines a collector can parse, readable text lines,
set up once however often it is called, and no secret in any line it writes."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import pytest

from shelfops import logs, redact
from shelfops.errors import ConfigError

SECRET = "s3cr3t-7f3c1e9b"


def lines(err: str) -> list[dict]:
    return [json.loads(x) for x in err.splitlines() if x.startswith("{")]


def test_a_json_line_has_ts_level_logger_msg_and_the_extra_fields(restore_logging, capsys):
    logs.setup("info", json=True)
    logging.getLogger("shelfops.test").info("served %s in %d ms", "search", 12,
                                            extra={"request_id": "r-1", "status": 200, "duration_ms": 1.5})
    logging.getLogger("shelfops.test").debug("below the level")
    (got,) = lines(capsys.readouterr().err)
    assert list(got)[:4] == ["ts", "level", "logger", "msg"]
    assert got["level"] == "info" and got["logger"] == "shelfops.test" and got["msg"] == "served search in 12 ms"
    assert got["request_id"] == "r-1" and got["status"] == 200 and got["duration_ms"] == 1.5
    assert got["ts"].endswith("Z")
    ts = datetime.fromisoformat(got["ts"].replace("Z", "+00:00"))
    assert ts.utcoffset().total_seconds() == 0 and abs(ts.timestamp() - datetime.now().timestamp()) < 60


def test_a_text_line_is_readable_and_cannot_be_forged_by_a_client(restore_logging, capsys):
    logs.setup("warning")
    log = logging.getLogger("shelfops.test")
    log.warning("GET %s 404", "/x\n2025-01-01T00:00:00.000Z INFO    shelfops.access: forged", extra={"status": 404})
    try:
        raise ValueError("boom")
    except ValueError:
        log.error("failed", exc_info=True)
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert " WARNING shelfops.test: GET /x\\n2025" in first and first.endswith(" status=404")
    assert "forged" in first and not any(x.startswith("2025-01-01") for x in err.splitlines())
    assert "ERROR   shelfops.test: failed" in err and "ValueError: boom" in err  # the traceback follows


def test_setup_is_idempotent_and_takes_over_uvicorns_loggers(restore_logging):
    logging.getLogger("uvicorn.access").addHandler(logging.StreamHandler())
    logging.getLogger("uvicorn").propagate = False
    for _ in range(3):
        logs.setup("debug", json=True)
    logs.setup("error")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "shelfops", False)]
    assert len(ours) == 1 and isinstance(ours[0].formatter, logs.TextFormatter)  # the last call wins
    assert logging.getLogger().level == logging.ERROR
    for name in logs.UVICORN:
        lg = logging.getLogger(name)
        assert lg.handlers == [] and lg.level == logging.NOTSET
    assert logging.getLogger("uvicorn").propagate and logging.getLogger("uvicorn.error").propagate
    # uvicorn's access log is off (it writes one when the logger has a handler): the app writes its own
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    # the access log shows whatever the level; the server decides whether to write it
    assert logging.getLogger(logs.ACCESS).getEffectiveLevel() == logging.INFO
    with pytest.raises(ConfigError, match="loud"):
        logs.setup("loud")


def test_secrets_are_redacted_from_messages_fields_and_tracebacks(restore_logging, capsys):
    logs.setup("debug", json=True)
    log = logging.getLogger("shelfops.test")
    log.info("request headers %s", {"authorization": f"Bearer {SECRET}", "accept": "*/*"})
    log.info("GET /dashboard?token=%s&x=1 from postgresql://u:%s@db/x", SECRET, SECRET)
    log.info("auth", extra={"authorization": f"Bearer {SECRET}", "token": SECRET,
                            "url": f"/dashboard?token={SECRET}", "headers": {"cookie": f"shelfops_read={SECRET}"},
                            "raw": [(b"authorization", f"Bearer {SECRET}".encode()).__repr__()]})
    try:
        raise RuntimeError(f"upstream refused Authorization: Bearer {SECRET}")
    except RuntimeError:
        log.exception("failed")
    err = capsys.readouterr().err
    got = lines(err)
    assert len(got) == 4 and SECRET not in err
    assert got[0]["msg"] == "request headers {'authorization': '***', 'accept': '*/*'}"
    assert got[1]["msg"] == "GET /dashboard?token=***&x=1 from postgresql://u:***@db/x"
    assert got[2]["authorization"] == "***" and got[2]["token"] == "***"
    assert got[2]["url"] == "/dashboard?token=***" and got[2]["headers"] == {"cookie": "***"}
    assert "Authorization: ***" in got[3]["exc"] and "RuntimeError" in got[3]["exc"]


def test_redact_text_hides_credentials_and_keeps_the_rest():
    cases = {
        "Authorization: Bearer abc.def-1": "Authorization: ***",
        "authorization=Token abc def": "authorization=***",
        '{"Authorization": "Basic dXNlcjpwdw=="}': '{"Authorization": "***"}',
        "(b'authorization', b'Bearer abc')": "(b'authorization', b'Bearer ***')",
        "Cookie: shelfops_read=abcd; other=1": "Cookie: ***",
        "GET /dashboard?token=abc&k=5": "GET /dashboard?token=***&k=5",
        "redis://:pw@redis:6379/0": "redis://:***@redis:6379/0",
        "POST /v1/search 200 in 12 ms": "POST /v1/search 200 in 12 ms",
    }
    for given, want in cases.items():
        assert redact.text(given) == want, given
        assert redact.text(want) == want  # a second pass changes nothing


def test_the_environment_names_level_and_format():
    assert logs.env_choice({}) == (None, None)
    assert logs.env_choice({"SHELFOPS_LOG_LEVEL": "debug", "SHELFOPS_LOG_JSON": "1"}) == ("debug", True)
    assert logs.env_choice({"SHELFOPS_LOG_JSON": "false"}) == (None, False)
