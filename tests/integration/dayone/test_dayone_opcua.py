"""Day one against real servers: opcua cert, discover opcua, config init, config check, run --test.

Two servers: the project's asyncua carrier simulator, and a foreign one, node-opcua from
npm (installed by this folder's package.json), each secure (Basic256Sha256 SignAndEncrypt
and a username only) and insecure. Every command runs through the real CLI app.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from drivers.opcua import der_bytes
from simulators.transport_carrier.certs import server_certificate
from tests.integration.dayone.support import carrier_sim, medgw, nodeopcua_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
PASSWORD = {"MEDGW_OPCUA_PASSWORD": "change-me"}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh directory, as a user would (relative pki/ paths)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_cert() -> Path:
    """``medgw opcua cert``; check what it printed against the file it wrote."""
    result = medgw("opcua", "cert", "--dir", "pki")
    assert result.exit_code == 0, result.output
    der = Path("pki/medgw-client.der").read_bytes()
    assert hashlib.sha1(der).hexdigest().upper() in result.output
    assert "pki/trusted/certs" in result.output
    return Path("pki/medgw-client.der")


def config_from(block: Path, name: str = "medgw.yaml") -> Path:
    """``config init`` from one device block, then ``config check``."""
    result = medgw("config", "init", "-o", name, "--device", block, "--site", "st-olav",
                   "--gateway", "edge-01", "--spool-dir", "spool")
    assert result.exit_code == 0, result.output
    check = medgw("config", "check", name)
    assert check.exit_code == 0, check.output
    assert "ok" in check.output
    return Path(name)


def dry_run(config: Path, device: str, streams: tuple[str, ...]) -> str:
    """``run --test``: connected, and samples in each expected stream."""
    result = medgw("run", "--test", "-c", config, "--seconds", "3", env=PASSWORD)
    assert result.exit_code == 0, result.output
    assert f"device {device} (opcua): connected" in result.output
    for stream in streams:
        line = next(ln for ln in result.output.splitlines()
                    if ln.startswith(f"  stream {stream}:"))
        assert int(line.split(": ")[1].split()[0]) > 0, line
    assert "GOOD" in result.output and "nothing was published" in result.output
    return result.output


def test_asyncua_secure_from_address_to_dry_run(workdir: Path) -> None:
    cert = make_cert()
    sim_cert = server_certificate(workdir / "sim-pki")
    with carrier_sim(security=("Basic256Sha256_SignAndEncrypt",), server_cert=sim_cert,
                     users={"gateway": "change-me"}, trusted_clients=(cert.resolve(),)) as sim:
        first = medgw("discover", "opcua", sim.endpoint, "--save-cert", "pki/server.der")
        assert first.exit_code == 0, first.output
        assert "Basic256Sha256" in first.output and "SignAndEncrypt" in first.output
        assert "users: UserName" in first.output
        assert "not browsed" in first.output and "medgw opcua cert" in first.output
        assert Path("pki/server.der").read_bytes() == sim_cert.cert.read_bytes()
        assert hashlib.sha1(sim_cert.cert.read_bytes()).hexdigest().upper() in first.output

        found = medgw("discover", "opcua", sim.endpoint, "--save-cert", "pki/server.der",
                      "--certificate", cert, "--username", "gateway", "--name", "carriers",
                      "-o", "carriers.yaml", env=PASSWORD)
        assert found.exit_code == 0, found.output
        assert "session Basic256Sha256 SignAndEncrypt, user gateway" in found.output
        assert "stream carrier-01 (9 fields)" in found.output
        assert "°C" in found.output and "Fleet/carrier-01/Route (String)" in found.output
        options = yaml.safe_load(Path("carriers.yaml").read_text())[0]["options"]
        assert options["security_mode"] == "SignAndEncrypt"
        assert options["server_certificate"] == "pki/server.der"
        assert options["password"] == {"env": "MEDGW_OPCUA_PASSWORD"}
        assert options["browse"] == [{"pattern": "Fleet/*/*"}]

        dry_run(config_from(Path("carriers.yaml")), "carriers", ("carrier-01", "carrier-02"))


def test_asyncua_insecure_explicit_nodes(workdir: Path) -> None:
    with carrier_sim(security=("None",)) as sim:
        found = medgw("discover", "opcua", sim.endpoint, "--nodes", "--name", "fleet",
                      "-o", "fleet.yaml")
        assert found.exit_code == 0, found.output
        assert "session security None, anonymous" in found.output
        options = yaml.safe_load(Path("fleet.yaml").read_text())[0]["options"]
        assert options["security_policy"] == "None" and "username" not in options
        nodes = options["nodes"]
        assert len(nodes) == 2 * 9  # two carriers, nine numeric variables each
        assert all(n["node_id"].startswith("nsu=urn:medgw:sim:transport-carrier;")
                   for n in nodes)
        dry_run(config_from(Path("fleet.yaml")), "fleet", ("carrier-01", "carrier-02"))


def test_nodeopcua_secure_rejects_then_trusts(workdir: Path, node: Path) -> None:
    cert = make_cert()
    with nodeopcua_server(node, workdir, secure=True) as server:
        first = medgw("discover", "opcua", server.endpoint, "--save-cert", "pki/server.der")
        assert first.exit_code == 0, first.output
        assert "Basic256Sha256" in first.output and "not browsed" in first.output
        own = der_bytes((server.pki / "own" / "certs" / "certificate.pem").read_bytes())
        assert Path("pki/server.der").read_bytes() == own

        refused = medgw("discover", "opcua", server.endpoint, "--save-cert", "pki/server.der",
                        "--certificate", cert, "--username", "gateway", env=PASSWORD)
        assert refused.exit_code == 1
        assert "trusted certificates" in " ".join(refused.output.split())
        rejected = list(server.rejected.glob("*.pem"))
        assert len(rejected) == 1
    # the integrator's move: rejected -> trusted, and the server restarted on the same pki
    server.trusted.mkdir(parents=True, exist_ok=True)
    shutil.move(rejected[0], server.trusted / rejected[0].name)
    with nodeopcua_server(node, workdir, secure=True) as server:
        found = medgw("discover", "opcua", server.endpoint, "--save-cert", "pki/server.der",
                      "--certificate", cert, "--username", "gateway", "--name", "carts",
                      "-o", "carts.yaml", env=PASSWORD)
        assert found.exit_code == 0, found.output
        assert "stream cart-1 (4 fields)" in found.output
        assert "Carriers/cart-1/SerialNumber (String)" in found.output
        lines = found.output.splitlines()
        assert any("payload_temperature" in ln and "Double" in ln and "°C" in ln for ln in lines)
        assert any("speed" in ln and "Float" in ln for ln in lines)
        options = yaml.safe_load(Path("carts.yaml").read_text())[0]["options"]
        assert options["browse"] == [{"pattern": "Carriers/*/*"}]
        assert options["username"] == "gateway"
        dry_run(config_from(Path("carts.yaml")), "carts", ("cart-1", "cart-2"))


def test_nodeopcua_insecure(workdir: Path, node: Path) -> None:
    with nodeopcua_server(node, workdir, secure=False) as server:
        found = medgw("discover", "opcua", server.endpoint, "-o", "carts.yaml")
        assert found.exit_code == 0, found.output
        assert "session security None, anonymous" in found.output
        options = yaml.safe_load(Path("carts.yaml").read_text())[0]["options"]
        assert options["security_policy"] == "None"
        dry_run(config_from(Path("carts.yaml")), "opcua-device", ("cart-1", "cart-2"))
