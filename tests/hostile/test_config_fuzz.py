"""Config parsing under hostile input: a ConfigError naming the file, or a loaded config.

Never another exception (a traceback at `medgw config check` or at start): arbitrary
bytes, YAML-ish text, and valid sample configs mutated value by value. Fixed example
budget, derandomized, so CI runs the same cases every time.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import LoadedConfig, load_config
from gateway.errors import ConfigError
from tests.helpers import sample_config_path

pytestmark = pytest.mark.hostile

BUDGET = settings(max_examples=300, derandomize=True, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
BASES = [yaml.safe_load(sample_config_path(name).read_text(encoding="utf-8"))
         for name in ("synthetic", "opcua")]
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 2)
           | st.floats() | st.text(max_size=40)
           | st.sampled_from(["medgw/#", "+", "/", "", "status", "a b", "None", "{env: X}",
                              "\x00", "\udc80", "2024-13-45", "opc.tcp://127.0.0.1:1"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=12), inner, max_size=3), max_leaves=6)
YAMLISH = st.text(alphabet=st.sampled_from(list("ab:-[]{}'\"!&*#|>%@`,?\n  \t\\0.e+~é\x00\ufeff")),
                  max_size=200)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-fuzz") / "gw.yaml"


def outcome(path: Path, data: bytes) -> LoadedConfig | ConfigError:
    """Load ``data`` as a config file: the loaded config or the ConfigError, nothing else."""
    path.write_bytes(data)
    try:
        return load_config(path)
    except ConfigError as err:
        assert err.file == str(path), f"the error does not name the file: {err}"
        return err


def slots(doc: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) of a parsed YAML document."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield doc, key
            yield from slots(value)
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield doc, index
            yield from slots(value)


@BUDGET
@given(st.binary(max_size=400))
def test_arbitrary_bytes(config_file: Path, data: bytes) -> None:
    outcome(config_file, data)


@BUDGET
@given(YAMLISH)
def test_yaml_like_text(config_file: Path, text: str) -> None:
    outcome(config_file, text.encode("utf-8", "surrogatepass"))


@BUDGET
@given(st.data())
def test_mutated_sample_configs(config_file: Path, data: st.DataObject) -> None:
    doc = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    for _ in range(data.draw(st.integers(1, 4))):
        container, key = data.draw(st.sampled_from(list(slots(doc))))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            container[key] = data.draw(VALUES)
        elif action == "delete":
            del container[key]
            if not list(slots(doc)):
                break
        elif isinstance(container, dict):
            container[data.draw(st.text(max_size=12))] = data.draw(VALUES)
        else:
            container.append(data.draw(VALUES))
    text = yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")
    if data.draw(st.booleans()):  # and a few flipped bytes on top
        raw = bytearray(text)
        for _ in range(data.draw(st.integers(1, 3))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        text = bytes(raw)
    outcome(config_file, text)


def test_the_unmutated_samples_load(config_file: Path) -> None:
    for doc in BASES:
        assert isinstance(outcome(config_file, yaml.safe_dump(doc).encode()), LoadedConfig)
