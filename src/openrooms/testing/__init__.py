"""openrooms inside a test suite: the emulator, in memory on a free port, over TLS with a CA of its own.

    from openrooms.testing import Emulator

    with Emulator() as emulator:
        rooms = emulator.rooms_client()

pytest users get the `openrooms` fixtures from the plugin `openrooms.testing.plugin` (registered as a pytest11
entry point; docs/testing.md). Importing this package imports neither pytest nor the server: only starting an
emulator does.
"""

from openrooms.testing._emulator import (
    Emulator,
    EmulatorClock,
    emulator,
    sign_headers,
    wait_until_healthy,
)

__all__ = ["Emulator", "EmulatorClock", "emulator", "sign_headers", "wait_until_healthy"]
