"""The carrier simulator's fault-injection API: bad sensors, excursions, doors, removals.

A mixin of :class:`simulators.transport_carrier.server.CarrierSim`: each fault changes the
fleet model or the address space and publishes at once, so tests can derive exact
expectations from ``history``.
"""

from __future__ import annotations

import collections
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from asyncua import Server, ua

from simulators.transport_carrier.addressing import data_value, ns_to_datetime
from simulators.transport_carrier.config import SimConfig, SimStats, WriteRecord
from simulators.transport_carrier.fleet import Carrier, MissionState

if TYPE_CHECKING:
    from simulators.transport_carrier.server import _CarrierNodes


class CarrierFaults:
    """Fault injection over the simulator's fleet and address space (see CarrierSim)."""

    config: SimConfig
    fleet: list[Carrier]
    history: collections.deque[WriteRecord]
    stats: SimStats
    clock_skew_ns: int
    server: Server | None
    _nodes: dict[str, _CarrierNodes]
    _removed: set[str]
    _last: dict[tuple[str, str], tuple[Any, int]]
    _bad: dict[tuple[str, str], int]

    async def step(self, n: int = 1) -> None:
        """Advance the fleet ``n`` ticks (CarrierSim)."""
        raise NotImplementedError

    async def _publish(self, tick: int) -> None:
        raise NotImplementedError

    async def _add_carrier_nodes(self, carrier: Carrier) -> None:
        raise NotImplementedError

    def node_id(self, carrier: str, variable: str) -> ua.NodeId:
        """Return the node id of a carrier variable (CarrierSim)."""
        raise NotImplementedError

    def source_ns(self, tick: int) -> int:
        """Return the source timestamp of a tick (CarrierSim)."""
        raise NotImplementedError

    def carrier(self, name: str) -> Carrier:
        """Return the model of carrier ``name`` (KeyError names it if unknown)."""
        for carrier in self.fleet:
            if carrier.name == name:
                return carrier
        raise KeyError(f"unknown carrier {name!r}")

    async def sensor_bad(self, carrier: str, variable: str = "PayloadTemperature",
                         status: int = ua.StatusCodes.BadSensorFailure) -> None:
        """Fault: the variable reports a Bad status (value null) until ``sensor_ok``."""
        self.carrier(carrier)
        self._bad[(carrier, variable)] = status
        await self._fault_applied()

    async def sensor_ok(self, carrier: str, variable: str = "PayloadTemperature") -> None:
        """Clear a ``sensor_bad`` fault: the next publish writes the Good value again."""
        self._bad.pop((carrier, variable), None)
        await self._fault_applied()

    async def temperature_excursion(self, carrier: str, celsius: float = 11.5) -> None:
        """Fault: the payload temperature jumps to ``celsius`` (None clears it)."""
        self.carrier(carrier).faults.temperature_c = celsius
        await self._fault_applied()

    async def clear_temperature(self, carrier: str) -> None:
        """Clear a temperature excursion."""
        self.carrier(carrier).faults.temperature_c = None
        await self._fault_applied()

    async def open_door_in_transit(self, carrier: str) -> None:
        """Fault: put the carrier in transit (if it is not) and open its payload door."""
        model = self.carrier(carrier)
        if model.state is not MissionState.IN_TRANSIT:
            model.state = MissionState.IN_TRANSIT
            model.phase_s = 0.0
            model.position_m = min(model.position_m, model.route_length_m / 2)
        model.faults.door_forced_open = True
        await self._fault_applied()

    async def close_door(self, carrier: str) -> None:
        """Clear a forced-open door."""
        self.carrier(carrier).faults.door_forced_open = False
        await self._fault_applied()

    async def drive_fault(self, carrier: str, active: bool = True) -> None:
        """Fault: the carrier stops with mission state FAULT and alarm 401 (False clears)."""
        self.carrier(carrier).faults.drive_fault = active
        await self._fault_applied()

    async def _fault_applied(self) -> None:
        """Publish a fault: on a new tick in manual mode (a value gets a time of its own)."""
        if self.config.manual:
            await self.step()
        else:
            await self._publish(self.stats.ticks)

    def set_clock_skew(self, seconds: float) -> None:
        """Fault: offset every following SourceTimestamp by ``seconds``."""
        self.clock_skew_ns = int(seconds * 1e9)

    async def remove_carrier(self, carrier: str) -> None:
        """Fault: delete a carrier's object and variables (subscribers get BadNodeIdUnknown)."""
        nodes = self._nodes.pop(carrier)
        self._removed.add(carrier)
        assert self.server is not None
        now_ns = time.time_ns() // 1000 * 1000
        now = ns_to_datetime(now_ns)
        gone = ua.StatusCodes.BadNodeIdUnknown
        for name, node in nodes.variables.items():
            # what a conformant server tells monitored items of a deleted node
            await self.server.write_attribute_value(
                node.nodeid, data_value(ua.Variant(None, ua.VariantType.Null), gone, now, now))
            self._drop_datachange_callbacks(node.nodeid)
            self._last.pop((carrier, name), None)
            self.history.append(WriteRecord(self.stats.ticks, now_ns, carrier, name, None, gone))
        await self.server.delete_nodes([nodes.obj], recursive=True)

    def _drop_datachange_callbacks(self, nodeid: ua.NodeId) -> None:
        """Detach monitored items before deleting a node (asyncua would call them un-awaited)."""
        assert self.server is not None
        aspace = self.server.iserver.aspace
        attribute = aspace[nodeid].attributes[ua.AttributeIds.Value]
        for handle in list(attribute.datachange_callbacks):
            aspace.delete_datachange_callback(handle)

    async def restore_carrier(self, carrier: str) -> None:
        """Re-add a removed carrier with the same node ids and publish its current state."""
        self._removed.discard(carrier)
        await self._add_carrier_nodes(self.carrier(carrier))
        await self._fault_applied()

    async def inject_raw(self, carrier: str, variable: str, value: Any,
                         variant_type: ua.VariantType | None = None) -> None:
        """Fault: a buggy firmware publishes ``value`` with status Good, bypassing type checks.

        The server's own write path refuses a value of the wrong type, so this sets the
        attribute and notifies monitored items directly, as broken devices do.
        """
        assert self.server is not None
        nodeid = self.node_id(carrier, variable)
        now_ns = self.source_ns(self.stats.ticks)
        variant = ua.Variant(value) if variant_type is None else ua.Variant(value, variant_type)
        dv = data_value(variant, ua.StatusCodes.Good, ns_to_datetime(now_ns),
                         datetime.now(timezone.utc))
        attribute = self.server.iserver.aspace[nodeid].attributes[ua.AttributeIds.Value]
        previous, attribute.value = attribute.value, dv
        for handle, callback in list(attribute.datachange_callbacks.items()):
            await callback(handle, dv)
        attribute.value = previous  # keep the declared type so normal writes go on
        self._last.pop((carrier, variable), None)  # next tick writes the real value again
        self.history.append(WriteRecord(self.stats.ticks, now_ns, carrier, variable, value, 0,
                                        injected=True))
