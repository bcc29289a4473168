"""Development tools of the repository, not shipped in the package: the rotel collector
runner (``tools.rotel``, for tests, the demo and the benchmarks) and the demo
(``tools/demo.py``, what ``scripts/demo.sh`` runs)."""
