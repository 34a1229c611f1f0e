"""A TCP port for a server a test or benchmark starts (standard library only, so the
benchmark scripts can import it too)."""

from __future__ import annotations

import random
import socket

# Below Linux's ephemeral range (32768-60999 by default). A port the OS hands out for
# port 0 or for an outgoing connection comes from that range, so a port picked there and
# closed can be taken by anything before the server binds it: a load run's thousands of
# client sockets did, and `btp-bot serve` failed with "address already in use". Nothing
# takes a port down here unless asked for it by number.
LOW, HIGH = 20_000, 32_000


def free_port(host: str = "127.0.0.1") -> int:
    """A port of `host` that nothing is bound to now, chosen at random from a range the OS
    never allocates by itself (drawn from the OS's randomness, so parallel workers and their
    children differ even where a test has seeded `random`)."""
    chooser = random.SystemRandom()
    for _ in range(200):
        port = chooser.randrange(LOW, HIGH)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOW} and {HIGH} on {host}")
