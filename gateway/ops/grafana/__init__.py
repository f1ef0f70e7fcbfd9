"""Grafana dashboards, provisioning files and alert rules generated from the device model."""

from gateway.ops.grafana.render import Rendered, render

__all__ = ["Rendered", "render"]
