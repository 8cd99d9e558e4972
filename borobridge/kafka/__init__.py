"""Everything that talks to Kafka: the only package that imports aiokafka, behind typed adapters.

``sink`` commits a round in one transaction through ``producer``; ``checkpoints`` restores and re-reads the
cursors through ``consumer``; ``topics`` creates and checks topics through ``admin``; ``errors`` translates the
client's errors into :mod:`borobridge.errors` once.
"""

from typing import Final

CLIENT_LOGGER: Final = "aiokafka"  # the client library's logger, which repeats a line per reconnection attempt
