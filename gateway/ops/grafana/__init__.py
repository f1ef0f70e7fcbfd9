"""Grafana dashboards, provisioning files and alert rules generated from the device model."""

from gateway.ops.grafana.catalog import Thresholds
from gateway.ops.grafana.render import Rendered, render

__all__ = ["Rendered", "Thresholds", "render"]
