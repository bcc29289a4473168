"""The dashboard, in a real browser (issue 12): see conftest.py."""
