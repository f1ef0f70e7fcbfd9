"""Fixtures that start real mosquitto / influxd / victoria-metrics on free loopback ports."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import pytest

from gateway.ops.services import (
    InfluxdService,
    ManagedProcess,
    MosquittoService,
    VictoriaMetricsService,
)
from tests.helpers import InfluxTarget

_SERVICES_ATTR = "_medgw_services"
ServiceT = TypeVar("ServiceT", bound=ManagedProcess)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --keep-logs: keep service work dirs (configs, data, logs) of passing tests too."""
    parser.addoption("--keep-logs", action="store_true", default=False,
                     help="keep the work dirs and logs of services started by fixtures")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, Any, None]:
    """Attach the log tails of the test's services to a failing test's report."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
    if rep.failed:
        for service in getattr(item, _SERVICES_ATTR, []):
            rep.sections.append(
                (f"{service.name} log ({service.log_path})", service.log_tail(40)))


def _register(request: pytest.FixtureRequest, service: ManagedProcess) -> None:
    """Remember ``service`` on the test item so failures show its log."""
    node = request.node
    services = getattr(node, _SERVICES_ATTR, None)
    if services is None:
        services = []
        setattr(node, _SERVICES_ATTR, services)
    services.append(service)


def _failed(request: pytest.FixtureRequest) -> bool:
    """Return True when the requesting test failed in setup or call."""
    return any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
               for when in ("setup", "call"))


def _cleanup(request: pytest.FixtureRequest, service: ManagedProcess) -> None:
    """Kill ``service``; delete its work dir unless the test failed or --keep-logs."""
    try:
        service.stop(timeout_s=5.0)
    finally:
        service.kill()
    if not request.config.getoption("--keep-logs") and not _failed(request):
        shutil.rmtree(service.workdir, ignore_errors=True)


def _started(request: pytest.FixtureRequest, service: ServiceT) -> Iterator[ServiceT]:
    """Start ``service`` for one test, show its log if the test fails, always stop it."""
    _register(request, service)
    try:
        service.start()
        yield service
    finally:
        _cleanup(request, service)


@pytest.fixture
def mosquitto(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoService]:
    """A fresh mosquitto broker for this test (anonymous, no persistence); free to kill."""
    yield from _started(request, MosquittoService(tmp_path_factory.mktemp("mosquitto")))


@pytest.fixture
def make_mosquitto(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Callable[..., MosquittoService]]:
    """Factory: ``make_mosquitto(**MosquittoService kwargs)`` -> started broker, killed after."""
    started: list[MosquittoService] = []

    def make(**kwargs: Any) -> MosquittoService:
        service = MosquittoService(tmp_path_factory.mktemp("mosquitto"), **kwargs)
        started.append(service)
        _register(request, service)
        service.start()
        return service

    try:
        yield make
    finally:
        for service in started:
            _cleanup(request, service)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxdService]:
    """One influxd shared by the whole session (do not kill it: use influxd_private)."""
    service = InfluxdService(tmp_path_factory.mktemp("influxd"))
    try:
        service.start()
        yield service
    finally:
        try:
            service.stop(timeout_s=5.0)
        finally:
            service.kill()


@pytest.fixture
def influxdb(request: pytest.FixtureRequest, influxd: InfluxdService) -> Iterator[InfluxTarget]:
    """A fresh, empty database on the shared influxd, dropped after the test."""
    if not influxd.running:  # a test killed the shared server: bring it back
        influxd.start()
    _register(request, influxd)
    database = f"t_{uuid.uuid4().hex[:12]}"
    influxd.create_database(database)
    try:
        yield InfluxTarget(influxd, database)
    finally:
        if influxd.running:
            influxd.drop_database(database)


@pytest.fixture
def influxd_private(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[InfluxTarget]:
    """A private influxd for this test (free to kill/restart) with database ``medgw``."""
    for service in _started(request, InfluxdService(tmp_path_factory.mktemp("influxd"))):
        service.create_database("medgw")
        yield InfluxTarget(service, "medgw")


@pytest.fixture
def victoria(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsService]:
    """A fresh, empty victoria-metrics for this test (v1 /write and v2 /api/v2/write)."""
    yield from _started(request, VictoriaMetricsService(tmp_path_factory.mktemp("victoria")))
