"""Helpers shared by every test folder: OTLP builders (``otlp``), servers on free ports
(``servers``), a writer held back on demand (``gate``), and the store oracle
(``oracle``). Import them as ``tests.support.<module>``.
"""
