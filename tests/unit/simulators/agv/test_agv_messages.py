"""The simulator's messages follow the specification: validated with the driver's models."""

from __future__ import annotations

import json

import pytest

from drivers.vda5050.messages import ConnectionView, FactsheetView, StateView, decode
from drivers.vda5050.models import ConnectionV2, ConnectionV3, Factsheet, StateV2, StateV3
from simulators.agv.vehicle import ROUTE, STATIONS, AgvVehicle

VERSIONS = ("2.0.0", "2.1.0", "3.0.0")


def payload(doc: dict[str, object]) -> bytes:
    """Encode as the simulator does."""
    return json.dumps(doc).encode()


@pytest.mark.parametrize("version", VERSIONS)
def test_states_along_a_whole_route_validate(version: str) -> None:
    vehicle = AgvVehicle("agv-01", version)
    model = StateV3 if version.startswith("3") else StateV2
    seen_driving = seen_actions = False
    for step in range(400):  # ~200 s at 2 Hz: several legs, dwell times, actions
        vehicle.advance(0.5)
        doc = vehicle.state(1_796_119_200_000_000_000 + step * 500_000_000)
        model.model_validate(doc)  # strict: raises on any wrong type or name
        view = decode("state", payload(doc), "medgw-sim", "agv-01")
        assert isinstance(view, StateView) and view.header_id == step
        seen_driving |= view.driving
        seen_actions |= bool(view.actions)
    assert seen_driving and seen_actions


@pytest.mark.parametrize("version", VERSIONS)
def test_faults_validate(version: str) -> None:
    vehicle = AgvVehicle("agv-02", version)
    vehicle.errors.append({"errorType": "batteryFault", "errorLevel": "FATAL",
                           "errorDescription": "cell 3"})
    vehicle.estop = "REMOTE"
    vehicle.field_violation = True
    vehicle.mode = "TEACHIN"
    view = decode("state", payload(vehicle.state()))
    assert isinstance(view, StateView)
    assert (view.estop, view.field_violation, len(view.errors)) == ("REMOTE", True, 1)
    assert view.operating_mode == ("TEACH_IN" if version.startswith("3") else "TEACHIN")
    before = (view.x, view.y)
    vehicle.advance(5.0)
    assert (vehicle.motion.x, vehicle.motion.y) == before  # stopped


@pytest.mark.parametrize("version", VERSIONS)
def test_connection_and_factsheet_validate(version: str) -> None:
    vehicle = AgvVehicle("agv-03", version)
    v3 = version.startswith("3")
    for state in ("ONLINE", "OFFLINE", "CONNECTIONBROKEN"):
        doc = vehicle.connection(state)
        (ConnectionV3 if v3 else ConnectionV2).model_validate(doc)
        view = decode("connection", payload(doc))
        assert isinstance(view, ConnectionView) and view.state == state
    assert vehicle.connection("CONNECTIONBROKEN")["connectionState"] == (
        "CONNECTION_BROKEN" if v3 else "CONNECTIONBROKEN")
    doc = vehicle.factsheet()
    Factsheet.model_validate(doc)
    sheet = decode("factsheet", payload(doc))
    assert isinstance(sheet, FactsheetView) and sheet.speed_max == 1.5


def test_header_ids_per_topic_and_restart() -> None:
    vehicle = AgvVehicle("agv-04")
    assert [vehicle.state()["headerId"] for _ in range(3)] == [0, 1, 2]
    assert vehicle.connection("ONLINE")["headerId"] == 0
    vehicle.restart_numbering()
    assert vehicle.state()["headerId"] == 0


def test_low_battery_goes_to_the_dock_and_charges() -> None:
    vehicle = AgvVehicle("agv-05", battery=14.0)
    charged_at_dock = []
    peak = 0.0
    for _ in range(300):
        vehicle.advance(0.5)
        peak = max(peak, vehicle.battery)
        if vehicle.motion.charging:
            charged_at_dock.append((vehicle.motion.x, vehicle.motion.y))
    assert charged_at_dock and set(charged_at_dock) == {STATIONS["dock"]}
    assert peak >= 95.0 and not vehicle.motion.charging  # charged, then back on its route


def test_route_visits_the_lab_between_stations() -> None:
    assert ROUTE[1::2] == ("lab",) * (len(ROUTE) // 2)
