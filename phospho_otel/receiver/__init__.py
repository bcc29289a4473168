"""OTLP trace receivers, transport only: bytes in (``decode``), the request handed to the
aggregator's ``Ingestor``, the reply out. ``http`` (``POST /v1/traces``), ``grpc``
(``TraceService/Export``), and the bearer-token check they share (``auth``).
"""
