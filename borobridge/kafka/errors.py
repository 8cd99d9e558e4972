"""The Kafka client's errors, translated once into :mod:`borobridge.errors`; nothing else names them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from aiokafka.errors import IllegalOperation, InvalidProducerEpoch, KafkaConnectionError, KafkaError, ProducerFenced

from borobridge.errors import KafkaClientError

CLIENT_ERRORS: Final = (KafkaError,)  # what a client call raises on a refusal or a lost connection
SEND_ERRORS: Final = (KafkaError, IllegalOperation, TimeoutError)  # what a failed round raises
FENCES: Final = (ProducerFenced, InvalidProducerEpoch)
_CHAIN_LIMIT: Final = 16


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise the client's errors in the block as :class:`KafkaClientError`, the cause chained."""
    try:
        yield
    except KafkaError as exc:
        raise KafkaClientError(exc) from exc


def quoted(error: BaseException) -> str:
    """The error as messages quote it: the client's own error when it is one, translated or not."""
    return repr(error.cause if isinstance(error, KafkaClientError) else error)


def is_refused_connection(error: BaseException) -> bool:
    """The client could not connect (as opposed to a broker that answered with a refusal)."""
    cause = error.cause if isinstance(error, KafkaClientError) else error
    return isinstance(cause, KafkaConnectionError)


def given_up(reason: str) -> Exception:
    """The error a discarded producer's queued work fails with, as if its connection had been lost."""
    failure: Exception = KafkaConnectionError(reason)
    return failure


def fence_in(error: BaseException, stopped: BaseException | None) -> BaseException | None:
    """The fence in ``error``'s chain of causes, or the error ``stopped`` the producer's sender, if any."""
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and len(chain) < _CHAIN_LIMIT:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if stopped is not None:
        chain.append(stopped)
    return next((cause for cause in chain if isinstance(cause, FENCES)), None)
