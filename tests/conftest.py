"""Shared by every test folder: this file puts tests/ on sys.path, so that test modules
can import the helpers beside it (``otlp_values``)."""
