"""The apps the interop tests run, one per library, each in its own process."""
