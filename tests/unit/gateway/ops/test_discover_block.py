"""``medgw discover opcua``: browse patterns, the device block, the report (fakes, no server)."""

from __future__ import annotations

from pathlib import Path

import yaml

from drivers.opcua import BrowsedVariable, BrowseSummary, Credentials, EndpointInfo, Survey
from drivers.opcua.browse import best_endpoint, propose_patterns
from drivers.opcua.certs import make_certificate
from gateway.config import SecretRef, parse_config
from gateway.ops.discover import device_block, device_yaml, survey_report


def endpoint(policy: str, mode: str, *tokens: str) -> EndpointInfo:
    """An endpoint as GetEndpoints would describe it."""
    return EndpointInfo("opc.tcp://127.0.0.1:4840/x", policy, mode, tokens, 0, b"")


def found(endpoints: list[EndpointInfo], summary: BrowseSummary | None) -> Survey:
    """A survey result without a server."""
    return Survey("opc.tcp://127.0.0.1:4840/x", tuple(endpoints), best_endpoint(endpoints),
                  None, None, summary, "security None, anonymous" if summary else None,
                  None if summary else "the tree was not browsed: the server needs a user")


SUMMARY = BrowseSummary(
    ("Fleet/*/*",),
    {"cart-1": (BrowsedVariable("Fleet/cart-1/Battery", "nsu=urn:v;s=cart-1.Battery", "cart-1",
                                "battery", "Double", "%"),)},
    (("Fleet/cart-1/Serial", "String"),), ())


def test_patterns_generalize_siblings_only() -> None:
    paths = [("Fleet", "a", "X"), ("Fleet", "b", "X"), ("Line", "press", "P"),
             ("solo", "T"), ("Top",), ("A*", "b", "c")]
    assert propose_patterns(paths) == ("*", "solo/*", "A[*]/b/*", "Fleet/*/*", "Line/press/*")


def test_best_endpoint_prefers_encryption_and_skips_unsupported() -> None:
    eps = [endpoint("None", "None", "Anonymous"),
           endpoint("Basic256Sha256", "Sign", "UserName"),
           endpoint("Basic256Sha256", "SignAndEncrypt", "UserName"),
           endpoint("Aes256_Sha256_RsaPss", "SignAndEncrypt", "UserName")]
    chosen = best_endpoint(eps)
    assert chosen is not None and (chosen.policy, chosen.mode) == ("Basic256Sha256",
                                                                    "SignAndEncrypt")
    assert not eps[3].supported
    assert best_endpoint([eps[3]]) is None


def test_secure_block_loads_in_a_config(tmp_path: Path) -> None:
    files = make_certificate(tmp_path)
    cred = Credentials(files.certificate, files.private_key, "gateway",
                       SecretRef(env="MY_PW"))
    block = device_block(found([endpoint("Basic256Sha256", "SignAndEncrypt", "UserName")],
                               SUMMARY), "carts", cred, files.certificate, False)
    options = block["options"]
    assert options["security_mode"] == "SignAndEncrypt"
    assert options["username"] == "gateway" and options["password"] == {"env": "MY_PW"}
    assert options["browse"] == [{"pattern": "Fleet/*/*"}]
    text = device_yaml(block)
    assert "MY_PW" in text and text.startswith("# medgw device block")
    config = {"site": "s", "gateway": "g", "devices": yaml.safe_load(text)}
    loaded = parse_config(config)
    assert loaded.config.devices[0].name == "carts"


def test_user_required_without_username_gets_a_placeholder_and_env() -> None:
    block = device_block(found([endpoint("None", "None", "UserName")], None), "d",
                         Credentials(), None, False)
    options = block["options"]
    assert options["security_policy"] == "None"
    assert options["username"] == "CHANGE-ME"
    assert options["password"] == {"env": "MEDGW_OPCUA_PASSWORD"}
    assert "the browse pattern is a guess" in device_yaml(block, found([], None))


def test_nodes_block_uses_namespace_uris() -> None:
    block = device_block(found([endpoint("None", "None", "Anonymous")], SUMMARY), "d",
                         Credentials(), None, True)
    assert block["options"]["nodes"] == [{"node_id": "nsu=urn:v;s=cart-1.Battery",
                                          "stream": "cart-1", "field": "battery"}]
    assert "browse" not in block["options"]
    parse_config({"site": "s", "gateway": "g", "devices": [block]})


def test_report_lists_endpoints_streams_and_skipped() -> None:
    eps = [endpoint("None", "None", "Anonymous"),
           endpoint("Aes256_Sha256_RsaPss", "SignAndEncrypt", "UserName")]
    text = survey_report(found(eps, SUMMARY))
    assert "* None" in text and "not supported by the driver" in text
    assert "stream cart-1 (1 fields)" in text and "Fleet/cart-1/Serial (String)" in text
    assert "not browsed" in survey_report(found(eps, None))
