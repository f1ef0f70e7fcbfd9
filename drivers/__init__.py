"""Protocol drivers, one package per protocol; each exposes ``DRIVER`` (a DriverInfo)."""
