"""``python -m phospho_otel``: the ``phospho-otel`` command line."""

from phospho_otel.cli import main

if __name__ == "__main__":
    main()
