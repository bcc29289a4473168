"""The store conformance suite (as Jaeger's storage integration tests): one set of tests
over ``store.api`` that every backend must pass, run against each backend of
``conftest.BACKENDS``."""
