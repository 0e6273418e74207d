from __future__ import annotations

import json

import pytest

from shelfops.artifacts import read_manifest, stage_output, verify_outputs
from shelfops.errors import ArtifactNotFound, IntegrityError, ShelfopsError


def test_manifest_written_last_and_atomic(tmp_path):
    out = tmp_path / "stage"
    with stage_output(out, "data", config={"a": 1}) as w:
        w.write_json("x.json", {"v": 1})
        assert not out.exists()  # nothing visible until the stage finishes
        w.manifest.counts["rows"] = 3
    m = read_manifest(out)
    assert m.stage == "data" and m.counts == {"rows": 3} and m.config == {"a": 1}
    assert set(m.outputs) == {"x.json"} and m.code_version and m.created_at
    verify_outputs(out)


def test_failed_stage_leaves_previous_artifact(tmp_path):
    out = tmp_path / "stage"
    with stage_output(out, "data") as w:
        w.write_json("x.json", {"v": 1})
    with pytest.raises(RuntimeError, match="boom"), stage_output(out, "data") as w:
        w.write_json("x.json", {"v": 2})
        raise RuntimeError("boom")
    assert json.loads((out / "x.json").read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]  # no temp folders left


def test_tampered_output_is_refused(tmp_path):
    out = tmp_path / "stage"
    with stage_output(out, "train") as w:
        w.path("model.safetensors").write_bytes(b"weights")
    (out / "model.safetensors").write_bytes(b"evil")
    with pytest.raises(IntegrityError, match="model.safetensors: checksum mismatch"):
        verify_outputs(out)


def test_missing_manifest(tmp_path):
    with pytest.raises(ArtifactNotFound, match="no manifest.json") as e:
        read_manifest(tmp_path)
    assert isinstance(e.value, ShelfopsError) and e.value.http_status == 404
