"""Fixtures of the day-one tests: node-opcua installed by the project's own package.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.dayone.support import install_nodeopcua


@pytest.fixture(scope="session")
def node() -> Path:
    """The node binary, with the node-opcua server's packages installed (npm, once)."""
    return install_nodeopcua()
