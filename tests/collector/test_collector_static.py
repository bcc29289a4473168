"""Static checks of the shipped collector configurations (collector-config/).

The otelcol-contrib configurations cannot run here (no binary is installable), so they are
checked against the component list verified by hand for the pinned release
(data/otelcol-contrib-components.yaml). rotel.env is checked against what the installed
rotel's ``start --help`` lists, then run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from phospho_otel.sdk._settings import DEFAULT_MAX_ATTRIBUTE_BYTES, DEFAULT_MAX_REQUEST_BYTES
from phospho_otel.semconv import SessionAttributes
from phospho_otel.server import ServerSettings
from tests.collector.collector_support import (
    CONFIG_DIR,
    DATA_DIR,
    ROTEL_ENV,
    RotelFromEnvFile,
    parse_env_file,
    rotel_help,
    rotel_help_env_vars,
)
from tools.rotel import free_port, rotel_binary

MIB = 1024 * 1024
TYPICAL_TASK_SPAN_BYTES = 973
"""Protobuf size of a typical task span (8 attributes), measured: see
shared reference collectors-and-performance.md."""
AGGREGATOR = ServerSettings()
"""The aggregator's defaults: HTTP 8318, gRPC 8317, 64 MiB body and gRPC message."""

OTELCOL_CONFIGS = sorted(CONFIG_DIR.glob("otelcol-contrib*.yaml"))
SECTIONS = ("receivers", "processors", "exporters", "extensions")


def verified() -> dict[str, Any]:
    return load(DATA_DIR / "otelcol-contrib-components.yaml")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), path
    return doc


def ctype(name: str) -> str:
    """Component type of a component id: ``otlp_http/phospho`` -> ``otlp_http``."""
    return name.split("/", 1)[0]


def port_of(endpoint: str) -> int:
    if "://" not in endpoint:
        endpoint = f"//{endpoint}"
    port = urlsplit(endpoint).port
    assert port is not None, f"no port in {endpoint!r}"
    return port


def duration_s(text: str) -> float:
    """``20ms`` / ``5s`` / ``1m`` -> seconds (the forms rotel and otelcol accept here)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    assert match, f"not a duration: {text!r}"
    return float(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2]]


def phospho_exporters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Exporters that deliver to a phospho-otel aggregator (named ``<type>/phospho``)."""
    return {k: v for k, v in config["exporters"].items() if k.endswith("/phospho")}


def batch_max(config: dict[str, Any]) -> int:
    return int(config["processors"]["batch"]["send_batch_max_size"])


def test_configurations_present() -> None:
    """The one-tier config and both tiers of the scale-out variant ship."""
    names = {p.name for p in OTELCOL_CONFIGS}
    assert names == {
        "otelcol-contrib.yaml",
        "otelcol-contrib-loadbalancer.yaml",
        "otelcol-contrib-tier2.yaml",
    }
    assert ROTEL_ENV.exists()
    assert (CONFIG_DIR / "README.md").exists()


@pytest.mark.parametrize("path", OTELCOL_CONFIGS, ids=lambda p: p.name)
class TestOtelcolConfig:
    """One otelcol-contrib configuration, checked against the pinned v0.154.0."""

    def test_valid_yaml_with_known_sections(self, path: Path) -> None:
        """Parses as a mapping of the collector's top-level sections, with a pipeline."""
        config = load(path)
        assert isinstance(config, dict)
        assert set(config) <= {*SECTIONS, "connectors", "service"}
        assert config["service"]["pipelines"], "no pipeline"

    def test_components_exist_at_pinned_version(self, path: Path) -> None:
        """Every component's type is in otelcol-contrib v0.154.0 (by its current name, not
        a deprecated alias) and sets only settings documented for it."""
        config, known = load(path), verified()
        assert known["version"] == "0.154.0"
        for section in SECTIONS:
            for name, settings in (config.get(section) or {}).items():
                kind = ctype(name)
                assert kind in known[section], f"{section}.{name}: {kind} not verified"
                spec = known[section][kind]
                assert set(settings or {}) <= set(spec["settings"]), (
                    f"{section}.{name}: unknown settings "
                    f"{sorted(set(settings or {}) - set(spec['settings']))}"
                )
        helper = known["exporterhelper"]
        for name, settings in config["exporters"].items():
            for block in ("retry_on_failure", "sending_queue"):
                assert set(settings.get(block, {})) <= set(helper[block]), f"{name}.{block}"
            otlp = settings.get("protocol", {}).get("otlp")
            if otlp is not None:  # load_balancing's per-backend otlp_grpc template
                assert "endpoint" not in otlp, "the resolver sets each backend's endpoint"
                assert set(otlp) <= set(known["exporters"]["otlp_grpc"]["settings"])

    def test_receivers_settings(self, path: Path) -> None:
        """OTLP receivers only use documented protocol settings."""
        config, known = load(path), verified()
        spec = known["receivers"]["otlp"]["protocols"]
        for name, settings in config["receivers"].items():
            for proto, proto_settings in settings["protocols"].items():
                assert proto in spec, f"{name}: protocol {proto}"
                assert set(proto_settings or {}) <= set(spec[proto]), f"{name}.{proto}"

    def test_every_reference_is_defined_and_every_definition_used(self, path: Path) -> None:
        """Pipelines name only defined components; nothing defined is left unused; queue
        storage names an extension the service enables."""
        config = load(path)
        service = config["service"]
        used: dict[str, set[str]] = {s: set() for s in SECTIONS}
        for pipeline in service["pipelines"].values():
            for section in ("receivers", "processors", "exporters"):
                for name in pipeline.get(section, []):
                    assert name in (config.get(section) or {}), f"{section}.{name} undefined"
                    used[section].add(name)
        for name in service.get("extensions", []):
            assert name in (config.get("extensions") or {}), f"extension {name} undefined"
            used["extensions"].add(name)
        for section in SECTIONS:
            assert set(config.get(section) or {}) == used[section], f"unused {section}"
        for name, settings in config["exporters"].items():
            storage = settings.get("sending_queue", {}).get("storage")
            if storage is not None:
                assert storage in service["extensions"], f"{name}: storage {storage}"

    def test_pipelines_complete(self, path: Path) -> None:
        """Each pipeline is a traces or logs pipeline with receivers, memory_limiter
        first, batch, and exporters."""
        for pipe_name, pipeline in load(path)["service"]["pipelines"].items():
            assert ctype(pipe_name) in ("traces", "logs")
            assert pipeline.get("receivers"), f"{pipe_name}: no receiver"
            assert pipeline.get("exporters"), f"{pipe_name}: no exporter"
            processors = pipeline.get("processors", [])
            assert processors and ctype(processors[0]) == "memory_limiter"
            assert "batch" in map(ctype, processors)

    def test_batch_fits_the_limits(self, path: Path) -> None:
        """One export request stays under the aggregator's 64 MiB limit even when its spans
        average two attribute values at the SDK's 64 KiB truncation limit, and the SDK's
        requests fit the receivers (16 MiB; the gRPC default would be 4 MiB)."""
        config = load(path)
        batch = config["processors"]["batch"]
        size, maximum = int(batch["send_batch_size"]), batch_max(config)
        assert 0 < size <= maximum
        assert duration_s(batch["timeout"]) <= 0.05, "a batch adds at most 50 ms"
        if phospho_exporters(config):
            assert AGGREGATOR.max_body_bytes // maximum >= 2 * DEFAULT_MAX_ATTRIBUTE_BYTES
        for settings in config["receivers"].values():
            protocols = settings["protocols"]
            if "grpc" in protocols:
                mib = protocols["grpc"].get("max_recv_msg_size_mib", 4)
                assert mib * MIB >= DEFAULT_MAX_REQUEST_BYTES
                # what tier 1 sends to a tier-2 receiver: 512 spans of 32x a typical span
                assert mib * MIB // maximum >= 32 * TYPICAL_TASK_SPAN_BYTES
            if "http" in protocols:
                body = protocols["http"].get("max_request_body_size", 20 * MIB)
                assert body >= DEFAULT_MAX_REQUEST_BYTES

    def test_aggregator_endpoints_match_its_defaults(self, path: Path) -> None:
        """Exporters to the aggregator use its default ports: OTLP/HTTP 8318, gRPC 8317;
        they retry without a deadline and queue on disk."""
        config = load(path)
        for name, settings in phospho_exporters(config).items():
            expected = {"otlp_http": AGGREGATOR.http_port, "otlp_grpc": AGGREGATOR.grpc_port}
            assert port_of(settings["endpoint"]) == expected[ctype(name)], name
            assert urlsplit(settings["endpoint"]).path in ("", "/"), "/v1/traces is appended"
            retry = settings["retry_on_failure"]
            assert retry["enabled"] and duration_s(retry["max_elapsed_time"]) == 0
            assert duration_s(retry["initial_interval"]) < 1
            queue = settings["sending_queue"]
            assert queue["enabled"] and queue.get("storage")


class TestScaleOut:
    """The two tiers fit together and route by session."""

    def test_tier1_routes_by_session_to_tier2(self) -> None:
        """Tier 1's load_balancing exporter keys on session.id (a routing key v0.154.0
        supports for traces) and resolves tier 2's gRPC receiver port."""
        tier1 = load(CONFIG_DIR / "otelcol-contrib-loadbalancer.yaml")
        tier2 = load(CONFIG_DIR / "otelcol-contrib-tier2.yaml")
        lb = tier1["exporters"]["load_balancing"]
        assert lb["routing_key"] in verified()["exporters"]["load_balancing"][
            "traces_routing_keys"
        ]
        assert lb["routing_key"] == "attributes"
        assert lb["routing_attributes"] == [SessionAttributes.SESSION_ID]
        resolvers = set(lb["resolver"])
        assert resolvers and resolvers <= set(
            verified()["exporters"]["load_balancing"]["resolvers"]
        )
        tier2_grpc = port_of(tier2["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
        assert int(lb["resolver"]["dns"]["port"]) == tier2_grpc
        assert not phospho_exporters(tier1), "tier 1 never writes to an aggregator itself"
        assert set(phospho_exporters(tier2)) == {"otlp_http/phospho"}
        assert "otlp_grpc/jaeger" in tier1["exporters"]


class TestRotelEnv:
    """collector-config/rotel.env against the installed rotel."""

    def test_parses_and_uses_only_listed_variables(self) -> None:
        """Every variable is one ``rotel-agent start --help`` lists."""
        settings = parse_env_file(ROTEL_ENV)
        listed = rotel_help_env_vars()
        assert len(listed) > 100, "could not read rotel's --help"
        assert set(settings) <= listed, sorted(set(settings) - listed)

    def test_route_to_the_aggregator(self) -> None:
        """Exports OTLP/HTTP to the aggregator's default HTTP port, gzipped, traces and
        logs (no metrics)."""
        s = parse_env_file(ROTEL_ENV)
        assert s["ROTEL_EXPORTER"] == "otlp"
        assert s["ROTEL_OTLP_EXPORTER_PROTOCOL"] == "http"
        assert port_of(s["ROTEL_OTLP_EXPORTER_ENDPOINT"]) == AGGREGATOR.http_port
        assert urlsplit(s["ROTEL_OTLP_EXPORTER_ENDPOINT"]).path in ("", "/")
        assert s["ROTEL_OTLP_EXPORTER_COMPRESSION"] == "gzip"
        assert s["ROTEL_OTLP_RECEIVER_METRICS_DISABLED"] == "true"
        assert s["ROTEL_OTLP_RECEIVER_LOGS_DISABLED"] == "false"

    def test_batch_and_retry_settings(self) -> None:
        """Batches fit the aggregator's body limit and the SDK's requests fit rotel's gRPC
        receiver; batches wait 20-50 ms; retries start fast and last minutes."""
        s = parse_env_file(ROTEL_ENV)
        batch = int(s["ROTEL_TRACES_BATCH_MAX_SIZE"])
        assert AGGREGATOR.max_body_bytes // batch >= 2 * DEFAULT_MAX_ATTRIBUTE_BYTES
        assert batch * TYPICAL_TASK_SPAN_BYTES <= 4 * MIB, "even a 4 MiB gRPC hop holds it"
        assert int(s["ROTEL_OTLP_GRPC_MAX_RECV_MSG_SIZE_MIB"]) * MIB >= DEFAULT_MAX_REQUEST_BYTES
        assert 0.02 <= duration_s(s["ROTEL_TRACES_BATCH_TIMEOUT"]) <= 0.05
        assert duration_s(s["ROTEL_OTLP_EXPORTER_RETRY_INITIAL_BACKOFF"]) <= 0.5
        assert duration_s(s["ROTEL_OTLP_EXPORTER_RETRY_MAX_BACKOFF"]) <= 5
        assert duration_s(s["ROTEL_OTLP_EXPORTER_RETRY_MAX_ELAPSED_TIME"]) >= 300
        assert "[default: 5s]" in rotel_help(), "the slow default the file overrides"

    def test_rotel_runs_with_it(self, tmp_path: Path) -> None:
        """rotel starts from the file alone (ports and endpoint overridden), accepts OTLP on
        both receivers, logs no error or warning, and exits cleanly on SIGTERM."""
        rotel = RotelFromEnvFile(
            ROTEL_ENV, f"http://127.0.0.1:{free_port()}", log_path=tmp_path / "rotel.log"
        )
        rotel.start()
        try:
            # rotel logs its start a few ms after its receivers accept connections
            deadline = time.monotonic() + 5
            while "OTLP Receiver for metrics disabled" not in rotel.log():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            log = rotel.log()
            assert "Starting Rotel" in log
            assert "OTLP Receiver for metrics disabled" in log
            assert "ERROR" not in log and "WARN" not in log, log
        finally:
            assert rotel.stop(signal.SIGTERM) == 0, rotel.log()

    def test_rotel_refuses_a_bad_value(self, tmp_path: Path) -> None:
        """The run above can fail: rotel exits at once on a value it does not accept."""
        settings = parse_env_file(ROTEL_ENV) | {"ROTEL_OTLP_EXPORTER_PROTOCOL": "htp"}
        code, output = run_rotel_briefly(settings)
        assert code != 0 and "htp" in output, output

    def test_rotel_has_one_trace_exporter_only(self) -> None:
        """Why rotel.env does not also send to Jaeger: this rotel refuses two trace
        exporters (README: use the aggregator's Jaeger API, or otelcol-contrib to fan out).
        When a rotel release lifts the limit this fails: update the README and rotel.env."""
        code, output = run_rotel_briefly({
            "ROTEL_EXPORTERS": "phospho:otlp,jaeger:otlp",
            "ROTEL_EXPORTERS_TRACES": "phospho,jaeger",
            "ROTEL_EXPORTER_PHOSPHO_ENDPOINT": "http://127.0.0.1:9",
            "ROTEL_EXPORTER_JAEGER_ENDPOINT": "http://127.0.0.1:9",
        })
        assert code != 0, output
        assert "Only one exporter supported for ROTEL_EXPORTERS_TRACES" in output


def run_rotel_briefly(settings: dict[str, str]) -> tuple[int, str]:
    """Run ``rotel-agent start`` with these settings on free ports; it must exit by itself
    within 10 s (a configuration error). Its exit code and output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")} | settings
    env |= {
        "ROTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
    }
    done = subprocess.run(
        [str(rotel_binary()), "start"], env=env, capture_output=True, text=True, timeout=10
    )
    return done.returncode, done.stdout + done.stderr
