"""Web2Code benchmark harness (not part of the test suite's pass/fail).

``python -m bench.run --size 7b`` measures the converter, the engine and
llama.cpp's own tools side by side and writes ``bench/results/<date>-<machine>.{json,md,png}``.
See bench/README.md.
"""
