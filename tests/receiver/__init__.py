"""Tests of the OTLP receivers: decoding, OTLP/HTTP and OTLP/gRPC against a real store."""
