"""``medgw run --test`` on a synthetic device: streams and samples printed, no broker touched."""

from __future__ import annotations

from pathlib import Path

from tests.integration.dayone.support import medgw

CONFIG = """site: s
gateway: g
mqtt: {host: 127.0.0.1, port: 1}
spool: {dir: %s}
devices:
  - name: psm1
    driver: synthetic
    options:
      streams:
        - {name: joints, fields: 2, unit: rad, rate_hz: 50}
"""


def test_run_test_prints_streams_and_samples(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    spool = tmp_path / "spool"
    config.write_text(CONFIG % spool)
    result = medgw("run", "--test", "-c", config, "--seconds", "1")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "device psm1 (synthetic): connected" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("  stream joints:"))
    assert int(line.split(": ")[1].split()[0]) > 0 and "f0 [rad]" in line
    assert "would publish to medgw/v1/s/psm1/joints" in out and " GOOD f0=" in out
    assert "nothing was published" in out
    assert not spool.exists()  # no spool, no seq.json: a dry run leaves nothing behind


def test_run_test_fails_when_a_device_is_unreachable(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text("""site: s
gateway: g
devices:
  - name: far
    driver: opcua
    options:
      endpoint: opc.tcp://127.0.0.1:1/x
      security_policy: "None"
      browse: [{pattern: "*/*"}]
      reconnect_initial_s: 0.1
""")
    result = medgw("run", "--test", "-c", config, "--seconds", "1", "--connect-timeout", "1")
    assert result.exit_code == 1
    assert "device far (opcua): NOT connected" in result.output
    assert "cannot reach" in result.output
