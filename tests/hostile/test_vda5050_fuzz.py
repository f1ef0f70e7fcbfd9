"""Hostile input: whatever arrives on a fleet topic is appended or quarantined, never raised.

Derandomized with a fixed example budget (a deterministic test, not a search).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.drivers.vda5050.vda_support import make_fleet, state_v2, state_v3

pytestmark = pytest.mark.hostile
BUDGET = settings(max_examples=200, derandomize=True, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
TOPICS = st.sampled_from(["uagv/v2/acme/agv-1/state", "uagv/v3/acme/amr-3/state",
                          "uagv/v2/acme/agv-1/connection", "uagv/v3/acme/amr-3/factsheet",
                          "uagv/v2/acme/agv-1/visualization", "uagv/v9/acme/x/state",
                          "uagv/v2/acme/agv-1", "a/b/c/d/e/f"])


def mutate(doc: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A valid message with one field replaced (or removed, for None)."""
    out = dict(doc)
    if value is None:
        out.pop(key, None)
    else:
        out[key] = value
    return out


@BUDGET
@given(topic=TOPICS, payload=st.binary(max_size=200))
def test_arbitrary_bytes(topic: str, payload: bytes) -> None:
    fleet = make_fleet(visualization=True)
    fleet.handle(topic, payload, 0)
    assert fleet.stats.quarantined + sum(v.stats.states for v in fleet.vehicles.values()) <= 1


@BUDGET
@given(v3=st.booleans(), key=st.sampled_from(sorted(state_v3(1)) + sorted(state_v2(1))),
       value=JSON)
def test_one_field_of_a_valid_state_replaced(v3: bool, key: str, value: Any) -> None:
    fleet = make_fleet()
    doc = mutate(state_v3(1) if v3 else state_v2(1), key, value)
    try:
        payload = orjson.dumps(doc)
    except TypeError:  # e.g. an integer beyond 64 bits: not JSON orjson can write
        return
    topic = f"uagv/v{3 if v3 else 2}/acme/{'amr-3' if v3 else 'agv-1'}/state"
    fleet.handle(topic, payload, 0)
    states = sum(v.stats.states for v in fleet.vehicles.values())
    assert states + fleet.stats.quarantined == 1  # exactly one outcome, counted
