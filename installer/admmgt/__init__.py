"""admmgt: installer and command line for the admmgt control plane."""

from __future__ import annotations

from admmgt._install import InstallError, install, status, uninstall, upgrade, verify
from admmgt._resources import Package
from admmgt._sandbox import Sandbox, SandboxError
from admmgt._version import __version__

__all__ = [
    "InstallError",
    "Package",
    "Sandbox",
    "SandboxError",
    "__version__",
    "install",
    "status",
    "uninstall",
    "upgrade",
    "verify",
]
