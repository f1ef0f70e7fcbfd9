"""VDA 5050 driver: a read-only subscriber on a fleet's MQTT broker (versions 2.0, 2.1, 3.0)."""

from drivers.vda5050.driver import Vda5050Driver
from drivers.vda5050.mapping import (
    CONNECTION_STATES,
    ERROR_LEVELS,
    ESTOPS,
    EVENT_LABELS,
    OPERATING_MODES,
    STATE_FIELDS,
    EventCode,
)
from drivers.vda5050.options import FleetBroker, Vda5050Options, Vehicle
from drivers.vda5050.survey import FleetSurvey, VehicleSeen, device_options, survey_fleet
from gateway.driver import DriverInfo

DRIVER = DriverInfo(
    name="vda5050",
    options_model=Vda5050Options,
    create=Vda5050Driver,
    description="VDA 5050 AGV/AMR fleets over their own MQTT broker (read-only), headerId gaps",
)

__all__ = ["CONNECTION_STATES", "DRIVER", "ERROR_LEVELS", "ESTOPS", "EVENT_LABELS",
           "OPERATING_MODES", "STATE_FIELDS", "EventCode", "FleetBroker", "FleetSurvey",
           "Vda5050Driver", "Vda5050Options", "Vehicle", "VehicleSeen", "device_options",
           "survey_fleet"]
