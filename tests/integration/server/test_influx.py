"""Writers against real servers: V1Writer -> influxd 1.6, V2Writer -> victoria-metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.errors import StoreError
from gateway.model import SampleBatch, StreamSpec, make_batch
from gateway.ops.services import InfluxdService, VictoriaMetricsService, free_port
from gateway.server.influx import (
    V1Writer,
    V2Writer,
    classify_http,
    create_writer,
    parse_retry_after,
    redact_url,
)
from gateway.server.lineproto import encode_batch, split_body
from tests.helpers import InfluxTarget

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000


def _arm_batch(n: int = 50, first_seq: int = 100) -> SampleBatch:
    """A two-field stream with awkward values (tiny, huge, negative zero, one NaN)."""
    spec = StreamSpec("demo-hospital", "robot-1", "arm", ("x", "y"), ("m", "m"),
                      measurement="pose")
    values = np.linspace(-3.0, 3.0, 2 * n).reshape(n, 2)
    values[0] = [1e-05, 1.7976931348623157e308]
    values[1] = [-0.0, 5e-324]
    values[2, 1] = math.nan
    return make_batch(spec, T0 + np.arange(n, dtype=np.int64) * 1_000_003, values,
                      quality=np.arange(n) % 4, first_seq=first_seq)


def _v1(target: InfluxTarget, **kwargs: Any) -> V1Writer:
    """A V1Writer for the target's database."""
    return V1Writer(target.url, target.database, **kwargs)


@pytest.mark.parametrize("gzip_body", [False, True])
def test_v1_write_reads_back_exact_values(influxdb: InfluxTarget, gzip_body: bool) -> None:
    """Every sample comes back with its exact float values, quality, seq and ns timestamp."""
    batch = _arm_batch()
    body, n = encode_batch(batch)
    writer = _v1(influxdb, gzip_body=gzip_body)
    try:
        writer.write(body, n)
    finally:
        writer.close()
    rows = influxdb.query('SELECT x, y, quality, seq, device, site, stream FROM pose')
    assert len(rows) == len(batch) == influxdb.count("pose")
    for i, row in enumerate(rows):
        assert row["time"] == int(batch.timestamps_ns[i])
        assert row["seq"] == batch.first_seq + i
        assert row["quality"] == int(batch.quality[i])
        assert (row["device"], row["site"], row["stream"]) == ("robot-1", "demo-hospital", "arm")
        for j, name in enumerate(("x", "y")):
            expected = float(batch.values[i, j])
            if math.isnan(expected):
                assert row[name] is None
            else:
                assert row[name] == expected


def test_v1_event_text_and_channels(influxdb: InfluxTarget) -> None:
    """Text with quotes/newlines and per-channel points land as encoded."""
    events = StreamSpec("demo-hospital", "carrier-7", "fault", ("code",), ("",),
                        measurement="event")
    text = ('door "A" open', "line1\nline2", "back\\slash")
    ev = make_batch(events, T0 + np.arange(3), [[1.0], [2.0], [3.0]], first_seq=0, text=text)
    joints = StreamSpec("demo-hospital", "robot-1", "joints",
                        ("j1.position", "j1.effort", "j2.position", "j2.effort"),
                        ("rad", "Nm", "rad", "Nm"), measurement="joint_state", channel_tag="joint")
    js = make_batch(joints, T0 + np.arange(4), np.arange(16.0).reshape(4, 4), first_seq=5)
    writer = _v1(influxdb)
    for batch in (ev, js):
        writer.write(*encode_batch(batch))
    writer.close()
    assert [r["text"] for r in influxdb.query("SELECT text FROM event")] == [
        t.replace("\n", "\\n") for t in text]
    rows = influxdb.query("SELECT position, effort FROM joint_state WHERE joint = 'j2'")
    assert [(r["position"], r["effort"]) for r in rows] == [
        (float(v[2]), float(v[3])) for v in js.values]
    assert influxdb.count("joint_state") == 8


def test_v1_rewrite_is_idempotent(influxdb: InfluxTarget) -> None:
    """Writing the same batch again (a historical replay) overwrites, never duplicates."""
    batch = _arm_batch(20)
    writer = _v1(influxdb)
    writer.write(*encode_batch(batch))
    replay = batch.slice(5, 15)
    replay.historical = True
    writer.write(*encode_batch(replay))
    writer.close()
    assert influxdb.count("pose") == 20


def test_v1_malformed_line_is_not_retryable(influxdb: InfluxTarget) -> None:
    """A 400 names the bad line and is not retryable."""
    writer = _v1(influxdb)
    good, n = encode_batch(_arm_batch(3))
    with pytest.raises(StoreError) as info:
        writer.write(good + b"pose,site=a x=notanumber 1\n", n + 1)
    writer.close()
    err = info.value
    assert err.status == 400 and not err.retryable
    assert "x=notanumber" in str(err)


def test_v1_field_type_conflict_is_partial_write(influxdb: InfluxTarget) -> None:
    """A field type conflict is a 400 partial write naming the field, not retryable."""
    writer = _v1(influxdb)
    writer.write(*encode_batch(_arm_batch(3)))
    with pytest.raises(StoreError) as info:
        line = f'pose,device=robot-1,site=demo-hospital,stream=arm x="text" {T0 + 10}\n'
        writer.write(line.encode(), 1)
    writer.close()
    assert info.value.status == 400 and not info.value.retryable
    assert "partial write" in str(info.value) and "x" in str(info.value)


def test_v1_unknown_database(influxdb: InfluxTarget) -> None:
    """A missing database is a non-retryable 404 naming it."""
    writer = V1Writer(influxdb.url, "no_such_db")
    with pytest.raises(StoreError) as info:
        writer.write(*encode_batch(_arm_batch(3)))
    writer.close()
    assert info.value.status == 404 and not info.value.retryable
    assert "no_such_db" in str(info.value)


def test_v1_body_too_large_then_split(tmp_path: Path) -> None:
    """413 is not retryable as is; the split halves go through."""
    body, n = encode_batch(_arm_batch(40))
    with InfluxdService(tmp_path, max_body_size=len(body) * 2 // 3) as service:
        service.create_database("medgw")
        writer = V1Writer(service.url, "medgw")
        with pytest.raises(StoreError) as info:
            writer.write(body, n)
        assert info.value.status == 413 and not info.value.retryable
        for chunk, count in split_body(body, 2):
            writer.write(chunk, count)
        writer.close()
        assert service.count("pose", "medgw") == n


def test_v1_server_killed_is_retryable(influxd_private: InfluxTarget) -> None:
    """Connection refused while influxd is down is retryable; after a restart it works."""
    service = influxd_private.service
    writer = _v1(influxd_private, timeout_s=2.0)
    body, n = encode_batch(_arm_batch(10))
    service.kill()
    with pytest.raises(StoreError) as info:
        writer.write(body, n)
    assert info.value.retryable and info.value.status is None
    service.start()
    writer.write(body, n)
    writer.close()
    assert influxd_private.count("pose") == n


def test_v1_auth_refused_without_leaking_password(tmp_path: Path) -> None:
    """With auth enabled a bad login is a non-retryable 401 whose text has no password."""
    with InfluxdService(tmp_path, auth_enabled=True) as service:
        service.query_raw("CREATE USER admin WITH PASSWORD 'adminpw' WITH ALL PRIVILEGES")
        service.create_database("medgw", auth=("admin", "adminpw"))
        writer = V1Writer(f"http://someone:hunter2@127.0.0.1:{service.port}", "medgw",
                          username="medgw", password="s3cret-pw")
        with pytest.raises(StoreError) as info:
            writer.write(*encode_batch(_arm_batch(3)))
        writer.close()
    text = str(info.value)
    assert info.value.status in (401, 403) and not info.value.retryable
    assert "s3cret-pw" not in text and "hunter2" not in text


def test_v2_writer_against_victoria_metrics(victoria: VictoriaMetricsService) -> None:
    """influxdb-client (sync, ns precision, gzip) writes; VM returns exactly what was sent."""
    batch = _arm_batch(30)
    writer = V2Writer(victoria.url, "medgw", "hospital", "token-not-checked", gzip_body=True)
    writer.write(*encode_batch(batch))
    writer.close()
    series = victoria.export('{__name__="pose_seq"}')
    assert len(series) == 1
    assert series[0]["values"] == list(range(batch.first_seq, batch.first_seq + len(batch)))
    assert series[0]["timestamps"] == [int(t) // 1_000_000 for t in batch.timestamps_ns]
    finite_y = int(np.isfinite(batch.values[:, 1]).sum())
    assert victoria.count_samples('{__name__="pose_y"}') == finite_y
    assert victoria.count_samples('{__name__="pose_x"}') == len(batch)


def test_v2_writer_server_down_is_retryable(tmp_path: Path) -> None:
    """V2Writer against a stopped VM raises a retryable StoreError."""
    vm = VictoriaMetricsService(tmp_path)
    with vm:
        writer = V2Writer(vm.url, "medgw", "hospital", "tok", timeout_s=2.0)
    with pytest.raises(StoreError) as info:
        writer.write(*encode_batch(_arm_batch(3)))
    writer.close()
    assert info.value.retryable


def test_v2_writer_404_on_influxdb_1x(influxdb: InfluxTarget) -> None:
    """InfluxDB 1.6 has no /api/v2/write: a clear non-retryable 404."""
    writer = V2Writer(influxdb.url, influxdb.database, "org", "tok")
    with pytest.raises(StoreError) as info:
        writer.write(*encode_batch(_arm_batch(3)))
    writer.close()
    assert info.value.status == 404 and not info.value.retryable


def test_create_writer_backends(influxdb: InfluxTarget) -> None:
    """create_writer builds the right writer and refuses incomplete settings."""
    writer = create_writer("v1", influxdb.url, database=influxdb.database)
    writer.write(*encode_batch(_arm_batch(4)))
    writer.close()
    assert influxdb.count("pose") == 4
    incomplete: list[tuple[str, dict[str, Any]]] = [("v1", {}), ("v2", {}),
                                                    ("v3", {"database": "x"})]
    for backend, kwargs in incomplete:
        with pytest.raises(StoreError):
            create_writer(backend, influxdb.url, **kwargs)


def test_classification_rules() -> None:
    """Status codes map to retryable/non-retryable; Retry-After is honoured."""
    busy = classify_http(429, b'{"error":"slow down"}', "7", "x", 3)
    assert busy.retryable and busy.retry_after_s == 7.0 and "slow down" in str(busy)
    unavailable = classify_http(503, b"", "Wed, 21 Oct 2015 07:28:00 GMT", "x", 3)
    assert unavailable.retryable and unavailable.retry_after_s == 0.0
    too_big = classify_http(413, b"", None, "x", 3)
    assert not too_big.retryable and too_big.status == 413
    bad = classify_http(400, b'{"error":"unable to parse \'m f= 1\'"}', None, "x", 1)
    assert not bad.retryable and "unable to parse 'm f= 1'" in str(bad)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert parse_retry_after("soon") is None
    port = free_port()
    assert redact_url(f"http://u:p@127.0.0.1:{port}/x?u=a&p=b") == f"http://127.0.0.1:{port}/x"
