"""Tests of the store backends' own behaviour (the shared contracts are in
``tests/store_conformance``)."""
