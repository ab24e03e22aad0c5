"""A runnable FossaWork V2 stand-in on 127.0.0.1 for the health-check suite.

Importing this package is cheap (stdlib only); the FastAPI app lives in
``sandbox.app`` and is imported only by the uvicorn child process.
"""

from .core import Sandbox, ensure_frontend_deps
from .faults import FAULTS, Fault, SandboxError

__all__ = ["FAULTS", "Fault", "Sandbox", "SandboxError", "ensure_frontend_deps"]
