"""Set up a machine and run the demo or the tests: ``python3 -m gateway.ops.bootstrap demo|test``.

Stdlib only: this runs before any dependency is installed. It installs the Debian
packages medgw needs (when run as root, else it says what to install), creates ``.venv``
with the package and its test tools, and hands over to ``medgw demo`` or the test suite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
STAMP = VENV / ".medgw-installed"

# binary -> Debian package providing it
DEMO_BINARIES = {"mosquitto": "mosquitto", "influxd": "influxdb"}
TEST_BINARIES = {**DEMO_BINARIES, "victoria-metrics": "victoria-metrics",
                 "chromium": "chromium",  # chromium: the status-page screenshot test
                 "node": "nodejs", "npm": "npm",  # the node-opcua server of the day-one tests
                 "cmake": "cmake", "g++": "g++"}  # colcon build of ros_ws in the tests
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def say(message: str) -> None:
    """Print a progress line."""
    print(f"[medgw setup] {message}", flush=True)


def find_binary(name: str) -> str | None:
    """Find a server binary on PATH or in the sbin directories (mosquitto lives there)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in SBIN_DIRS:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


def run(cmd: list[str], **kwargs: object) -> None:
    """Run a command, echoing it; exit with its code if it fails."""
    say("$ " + " ".join(cmd))
    result = subprocess.run(cmd, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        say(f"command failed with exit code {result.returncode}: {' '.join(cmd)}")
        sys.exit(result.returncode)


def apt_install(packages: list[str]) -> None:
    """Install Debian packages when root with apt-get; otherwise explain and exit."""
    if not packages:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say("missing system packages: " + " ".join(packages))
        say("install them with: sudo apt-get install -y " + " ".join(packages))
        sys.exit(1)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env)


def ensure_system_packages(binaries: dict[str, str]) -> None:
    """Make sure every server binary medgw starts is installed."""
    missing = sorted({pkg for binary, pkg in binaries.items() if find_binary(binary) is None})
    if missing:
        say("installing Debian packages: " + " ".join(missing))
        apt_install(missing)


def ensure_venv() -> Path:
    """Create .venv (installing python3-venv if needed) and return its python."""
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    say(f"creating virtual environment {VENV}")
    result = subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=False)
    if result.returncode != 0:
        shutil.rmtree(VENV, ignore_errors=True)
        version = f"python3.{sys.version_info.minor}-venv"
        apt_install(["python3-venv", version] if shutil.which("apt-get") else ["python3-venv"])
        run([sys.executable, "-m", "venv", str(VENV)])
    return python


def ensure_package(python: Path) -> None:
    """pip install -e '.[test]' into the venv, again only when pyproject.toml changed."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    run([str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"])
    STAMP.write_text(digest)


def run_tests(python: Path, args: list[str]) -> int:
    """Lint, type-check and run pytest; map pytest's 'no tests selected' for selections."""
    bin_dir = python.parent
    for cmd in ([str(bin_dir / "ruff"), "check", "."],
                [str(bin_dir / "mypy"), "gateway", "drivers", "simulators"],
                [str(bin_dir / "lint-imports")]):  # the dependency rule (pyproject.toml)
        say("$ " + " ".join(cmd))
        if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
            say("lint, type or dependency-rule check failed")
            return 1
    cmd = [str(python), "-m", "pytest", *args]
    say("$ " + " ".join(cmd))
    code = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    if code == 5 and args:
        say("pytest: the selection ran no test (exit 5), treated as success")
        return 0
    return code


def main(argv: list[str]) -> int:
    """Entry point: ``demo [medgw demo options]`` or ``test [pytest options]``."""
    if sys.version_info < (3, 10):  # noqa: UP036 (runs before the package is installed)
        say(f"Python 3.10 or newer is required, this is {sys.version.split()[0]}")
        return 1
    if not argv or argv[0] not in ("demo", "test", "setup"):
        say("usage: python3 -m gateway.ops.bootstrap demo|test|setup [options]")
        return 2
    what, rest = argv[0], argv[1:]
    ensure_system_packages(DEMO_BINARIES if what == "demo" else TEST_BINARIES)
    python = ensure_venv()
    ensure_package(python)
    say("setup complete")
    if what == "demo":
        return subprocess.run([str(python.parent / "medgw"), "demo", *rest],
                              check=False).returncode
    if what == "test":
        return run_tests(python, rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
