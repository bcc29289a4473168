"""Data that crosses layers, and the rules that combine it. No I/O.

``records`` holds what the aggregator extracts from OTLP and a store keeps (spans, tasks,
feedback); ``rollup`` holds the session and user rollups and their merge rules, defined
once for the aggregator, every store backend, the tests' oracle and the benchmarks.
"""
