"""Serving smoke: ``python -m shelfops.gate.smoke FOLDER TEXT [TEXT_B]`` loads the artifact
as it ships (checksums verified), answers one input and prints one JSON line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from shelfops.optimize.shipped import load_shipped


def main(argv: list[str]) -> int:
    import numpy as np

    t0 = time.perf_counter()
    s = load_shipped(Path(argv[0]))
    loaded = time.perf_counter() - t0
    out = s.run([argv[1]], [argv[2]] if len(argv) > 2 else None)
    print(json.dumps({"variant": s.name, "finite": bool(np.isfinite(out).all()),
                      "output_shape": list(out.shape), "first": float(np.ravel(out)[0]),
                      "load_seconds": round(loaded, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
