"""The simulator's fault script syntax."""

from __future__ import annotations

import pytest
import typer

from simulators.agv.cli import parse_fault


def test_fault_script_entries() -> None:
    assert parse_fault("10:fatal:agv-02") == (10.0, "fatal", "agv-02", "")
    assert parse_fault("1.5:drop:agv-01:5") == (1.5, "drop", "agv-01", "5")
    assert parse_fault("3:malformed:agv-04:version") == (3.0, "malformed", "agv-04", "version")


@pytest.mark.parametrize("text", ["fatal:agv-02", "x:fatal:agv-02", "1:explode:agv-01"])
def test_bad_fault_entries_name_the_problem(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="--fault"):
        parse_fault(text)
