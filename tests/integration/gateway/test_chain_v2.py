"""The v2 backend end to end: synthetic -> MQTT -> ingest -> /api/v2/write on victoria-metrics.

influxdb-client gets 404 from Debian's InfluxDB 1.6.7 (no v2 API), so the v2 write path is
exercised against victoria-metrics, which accepts the InfluxDB v2 write API.
"""

from __future__ import annotations

import pytest

from gateway.ops.services import MosquittoService, VictoriaMetricsService
from tests.chain import Chain
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

TOTAL = 800


def test_v2_backend_writes_every_sample(mosquitto: MosquittoService,
                                        victoria: VictoriaMetricsService) -> None:
    from gateway.config import parse_config

    loaded = parse_config({
        "site": "test-site", "gateway": "gw-v2",
        "mqtt": {"port": mosquitto.port},
        "publisher": {"max_latency_ms": 50},
        "influxdb": {"backend": "v2", "url": victoria.url, "bucket": "medgw", "org": "medgw",
                     "flush_ms": 100},
        "health": {"enabled": False},
        "devices": [{"name": "gen", "driver": "synthetic", "options": {
            "total_samples": TOTAL, "tick_ms": 10,
            "streams": [{"name": "js", "fields": 3, "rate_hz": 1000, "measurement": "joint_state"},
                        {"name": "temp", "fields": 1, "rate_hz": 500, "measurement": "carrier"}],
        }}],
    }, "<v2 test config>")
    with Chain(loaded) as chain:
        wait_until(lambda: chain.produced() == 2 * TOTAL, 20, message="sources to finish")
        chain.stop()
    assert chain.ingest.stats.samples == 2 * TOTAL
    # victoria-metrics names series measurement_field; one sample per point and field. Its
    # search lags the write by up to a second even after /internal/force_flush, so poll.
    for series in ('{__name__="joint_state_seq",stream="js"}',
                   '{__name__="joint_state_f2",device="gen"}',
                   '{__name__="carrier_seq",stream="temp"}'):
        wait_until(lambda s=series: victoria.count_samples(s) >= TOTAL, 10, message=series)
        assert victoria.count_samples(series) == TOTAL
