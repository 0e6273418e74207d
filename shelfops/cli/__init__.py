"""The thin `shelfops` command line: parse, call the library, print, exit code.

Commands import their stage inside the function that runs it: `shelfops --help` then starts in
0.2 s instead of loading torch, transformers and MLflow (~5 s) for every command. That, and the
optional Ray engine, are the only shelfops imports inside functions; tests/unit/test_layers.py
holds every import to the layer order wherever it sits."""
