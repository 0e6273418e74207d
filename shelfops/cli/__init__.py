"""The thin `shelfops` command line: parse, call the library, print, exit code. The one place
where shelfops modules are imported inside functions (each command loads its stage when it
runs), besides the optional Ray engine; tests/unit/test_layers.py holds every import to the
layer order wherever it sits."""
