"""MLQ: a job queue and workers for slow machine-learning work, on Redis."""

from .errors import (
    ConnectionFailed, InvalidMessage, JobFailed, JobNotFound, ListenerError, MLQError,
    SignatureError,
)
from .lifecycle import Retry
from .listeners import listener
from .notebook import Job, RemoteError, report_progress
from .queue import MLQ

__version__ = "0.3.0"

__all__ = [
    "MLQ", "MLQError", "InvalidMessage", "JobNotFound", "JobFailed", "ListenerError",
    "SignatureError", "ConnectionFailed", "listener", "Retry", "Job", "RemoteError", "report_progress", "__version__",
]
