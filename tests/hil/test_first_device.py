"""HIL: the README's "Connect your first device" block, run as written, ends in InfluxDB.

The shell block of that section is read from README.md and each line is carried out in
order in a fresh directory: ``medgw`` commands through the real CLI app, ``export`` into
the environment, ``medgw sim carriers`` as the simulator with the same options (secure:
Basic256Sha256 SignAndEncrypt and a user only). Only addresses change: the simulator's
port, the broker's and influxd's are the test's free loopback ports, the spool a local
directory. ``medgw ingest`` and ``medgw run`` become the in-process chain (gateway and
ingest with the written config), and the data is counted in InfluxDB by InfluxQL.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.ops.services import MosquittoService
from simulators.transport_carrier.certs import CertPair, server_certificate
from tests.chain import Chain
from tests.helpers import InfluxTarget, wait_until
from tests.integration.dayone.support import SimThread, carrier_sim, free_port, medgw

pytestmark = [pytest.mark.hil, pytest.mark.integration, pytest.mark.timeout(300)]
README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> list[str]:
    """The command lines of the sh block in README's 'Connect your first device'."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Connect your first device", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "README: no sh block in 'Connect your first device'"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def sim_options(args: list[str], workdir: Path) -> dict[str, object]:
    """The simulator config of a ``medgw sim carriers`` line (the options it uses)."""
    parser = argparse.ArgumentParser()
    for flag in ("--port", "--carriers", "--security", "--cert-dir"):
        parser.add_argument(flag)
    parser.add_argument("--user", action="append", default=[])
    parser.add_argument("--trust-client", action="append", default=[])
    opts = parser.parse_args(args)
    cert_dir = workdir / opts.cert_dir
    cert: CertPair = server_certificate(cert_dir)
    return {"carriers": int(opts.carriers), "security": tuple(opts.security.split(",")),
            "server_cert": cert, "users": dict(u.split(":", 1) for u in opts.user),
            "trusted_clients": tuple((workdir / p).resolve() for p in opts.trust_client)}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh directory, and an environment that the block's ``export`` lines change."""
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    yield tmp_path
    os.environ.clear()
    os.environ.update(saved)


def test_readme_walkthrough_moves_data_into_influxdb(workdir: Path, mosquitto: MosquittoService,
                                                      influxdb: InfluxTarget) -> None:
    port = free_port()
    replace = {"127.0.0.1:4840": f"127.0.0.1:{port}",
               "--mqtt-port 1883": f"--mqtt-port {mosquitto.port}",
               "http://127.0.0.1:8086": influxdb.url,
               "--database medgw": f"--database {influxdb.database}",
               "/var/lib/medgw/spool": "spool"}
    daemons: list[str] = []
    outputs: dict[str, str] = {}
    with ExitStack() as stack:
        sim: SimThread | None = None
        for line in walkthrough():
            for old, new in replace.items():
                line = line.replace(old, new)
            words = shlex.split(line.rstrip("&"))
            if words[0] == "export":
                name, _, value = words[1].partition("=")
                os.environ[name] = value
                continue
            assert words[0] == "medgw", line
            if words[1:3] == ["sim", "carriers"]:
                sim = stack.enter_context(carrier_sim(port=port,
                                                      **sim_options(words[3:], workdir)))
                continue
            if words[1] in ("run", "ingest") and "--test" not in words:
                daemons.append(words[1])
                continue
            result = medgw(*words[1:])
            assert result.exit_code == 0, f"{line}\n{result.output}"
            outputs[" ".join(words[1:3])] = result.output
        assert sim is not None and daemons == ["ingest", "run"]
        assert "stream carrier-04 (9 fields)" in outputs["discover opcua"]
        assert "device carriers (opcua): connected" in outputs["run --test"]

        # medgw ingest & + medgw run, with the config the block wrote
        loaded = load_config(workdir / "medgw.yaml")
        options = loaded.driver_options["carriers"]
        assert options.model_dump()["security_mode"] == "SignAndEncrypt"
        with Chain(loaded) as chain:
            wait_until(lambda: chain.acked() >= 4 * 20, 30,
                       message="two seconds of every carrier acknowledged by the broker")
            chain.stop()
    assert chain.all_acked
    stored = sum(influxdb.count("carrier", "quality", f"\"stream\"='carrier-0{i}'")
                 for i in range(1, 5))
    events = influxdb.count("carrier_event", "seq")
    assert stored + events == chain.acked()  # every acknowledged sample is in InfluxDB
    assert all(influxdb.count("carrier", "quality", f"\"stream\"='carrier-0{i}'") > 0
               for i in range(1, 5))
