"""What the store keeps of room calls (defined with the service's records and ports, which the stores use)."""

from openrooms.service.model import CallServer
from openrooms.service.ports import CallStore

__all__ = ["CallServer", "CallStore"]
