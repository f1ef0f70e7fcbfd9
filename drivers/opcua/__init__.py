"""OPC UA driver: subscriptions on a carrier fleet server (or any OPC UA server), read-only."""

from drivers.opcua.browse import BrowsedVariable, BrowseSummary, EndpointInfo, get_endpoints
from drivers.opcua.certs import (
    TRUST_LOCATIONS,
    CertificateFiles,
    CertificateInfo,
    der_bytes,
    describe,
    make_certificate,
    thumbprint,
)
from drivers.opcua.driver import OpcUaDriver
from drivers.opcua.mapping import EVENT_LABELS
from drivers.opcua.options import BrowseSpec, EventOptions, NodeSpec, OpcUaOptions
from drivers.opcua.survey import (
    PASSWORD_ENV,
    Credentials,
    Survey,
    device_options,
    survey_server,
)
from gateway.driver import DriverInfo

DRIVER = DriverInfo(
    name="opcua",
    options_model=OpcUaOptions,
    create=OpcUaDriver,
    description="OPC UA subscriptions (asyncua), Basic256Sha256, carrier events",
)

__all__ = ["DRIVER", "EVENT_LABELS", "PASSWORD_ENV", "TRUST_LOCATIONS", "BrowseSpec",
           "BrowseSummary", "BrowsedVariable", "CertificateFiles", "CertificateInfo",
           "Credentials", "EndpointInfo", "EventOptions", "NodeSpec", "OpcUaDriver",
           "OpcUaOptions", "Survey", "der_bytes", "describe", "device_options",
           "get_endpoints", "make_certificate", "survey_server", "thumbprint"]
