"""Write a shelfops search model as a Hugging Face model folder that other servers load with
``AutoModelForSequenceClassification`` (``trust_remote_code``): bench/peers/modeling_shelfops.py,
a config naming it, the tokenizer cut at the model's own length, and the same weights renamed
(safetensors). Run with the project's venv; the folder is read by a peer's venv.

    .venv/bin/python bench/peers/hf_export.py runs/demo/models/v1 /tmp/peer/model
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent


def export(model: Path, out: Path) -> Path:
    spec = json.loads((model / "model.json").read_text())
    if spec["task"] != "search":
        raise SystemExit(f"{model}: a {spec['task']} model, not a search cross-encoder")
    out.mkdir(parents=True, exist_ok=True)
    enc = json.loads((model / "encoder" / "config.json").read_text())
    head = spec.get("extra", {}).get("head", "linear")
    (out / "config.json").write_text(json.dumps({
        "model_type": "shelfops-cross-encoder", "architectures": ["ShelfopsCrossEncoderForSequenceClassification"],
        "auto_map": {"AutoConfig": "modeling_shelfops.ShelfopsCrossEncoderConfig",
                     "AutoModelForSequenceClassification": "modeling_shelfops.ShelfopsCrossEncoderForSequenceClassification"},
        "encoder": enc, "pooling": spec.get("pooling", "mean"), "head": head, "num_labels": 1,
        # infinity's optimum engine truncates at this; the torch engine at the tokenizer's length
        "max_position_embeddings": spec["max_length"]}, indent=2))
    for f in (model / "encoder").iterdir():
        if f.name != "config.json":
            shutil.copy2(f, out / f.name)
    tok = out / "tokenizer_config.json"
    t = json.loads(tok.read_text())
    t["model_max_length"] = spec["max_length"]  # truncated where shelfops truncates
    tok.write_text(json.dumps(t, indent=2))
    shutil.copy2(HERE / "modeling_shelfops.py", out / "modeling_shelfops.py")
    state = load_file(str(model / "model.safetensors"))
    renamed = {k.replace("encoder.backbone.", "backbone.", 1).replace("head.1.", "linear.", 1): v
               for k, v in state.items()}
    save_file(renamed, str(out / "model.safetensors"))
    return out


if __name__ == "__main__":
    print(export(Path(sys.argv[1]), Path(sys.argv[2])))
