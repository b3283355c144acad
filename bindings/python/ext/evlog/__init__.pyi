"""evlog: log analytics events at the cost of a function call."""

import datetime
import decimal
import uuid
from collections.abc import Mapping, Sequence, Set
from os import PathLike
from typing import Any, Callable, TypedDict, Union

__version__: str

#: What ``log()`` converts (nested containers at most 64 levels deep).
Value = Union[
    None,
    bool,
    int,
    float,
    str,
    bytes,
    bytearray,
    datetime.datetime,
    datetime.date,
    decimal.Decimal,
    uuid.UUID,
    Mapping[str, "Value"],
    Sequence["Value"],
    Set["Value"],
]

class ErrorSummary(TypedDict):
    """What ``on_error`` receives: events of one outcome and reason that were not delivered."""

    outcome: str  # "rejected" (kept in the dead-letter table) or "dropped" (lost, counted)
    reason: str  # the counter's reason label, e.g. "invalid_field", "queue_full"
    count: int
    message: str  # one representative error message

class EvlogError(Exception):
    """Base class of every evlog error."""

class InvalidEvent(EvlogError):
    """log() refused the event: a bad envelope field or an unconvertible value (named)."""

class ConfigError(EvlogError):
    """Bad configuration: names the key (or file) and the rule. Also raised when the schema
    directory cannot be read (names ``schemas.dir``, the absolute path tried and the fix)."""

class SchemaError(ConfigError):
    """A schema file is malformed: names the file and, for a field, its dotted path.

    A subclass of ConfigError: ``configure()`` and ``Client()`` raise it, and ``except
    ConfigError`` keeps catching every configuration that cannot work."""

class SinkError(ConfigError):
    """The sink cannot be set up (e.g. its directory cannot be created). A subclass of
    ConfigError, like SchemaError."""

class Client:
    """A pipeline: bounded queue, background flush thread, sink.

    ``Client(path)`` reads a TOML file; ``Client(**settings)`` takes the same keys by section
    (``sink={"kind": "file", "file": {"dir": "out"}}``); with neither, ``EVLOG_CONFIG`` or the
    defaults. ``EVLOG_*`` environment variables override keys in every case. ``on_error`` is
    called on a daemon thread with an ``ErrorSummary`` for rejected and dropped events; its
    exceptions are logged (logger ``evlog``), never propagated.

    Raises ConfigError (the configuration cannot be read, breaks a rule, or its schema directory
    cannot be read), SchemaError (a schema file is malformed) or SinkError (the sink cannot be
    set up); SchemaError and SinkError are subclasses of ConfigError.
    """

    def __init__(
        self,
        path: Union[str, PathLike[str], None] = None,
        *,
        on_error: Callable[[ErrorSummary], object] | None = None,
        **settings: Any,
    ) -> None: ...
    def log(
        self,
        namespace: str,
        type: str,
        event: Mapping[str, Value],
        *,
        time: datetime.datetime | int | float | None = None,
        id: str | None = None,
    ) -> bool:
        """Queues an event; never blocks. False: dropped for a transport reason (queue full,
        shut down), counted. Raises InvalidEvent for a bad envelope or value. ``time``: a
        datetime (naive = UTC) or epoch milliseconds; ``id``: the insertId (default UUIDv7)."""
    def flush(self, timeout: float = 5.0) -> bool:
        """True when everything logged before was delivered (or dead-lettered) within
        ``timeout``; False on timeout or when events were spooled or dropped (see ``stats()``)."""
    def shutdown(self, timeout: float = 5.0) -> bool:
        """Delivers what is queued (bounded by ``timeout``) and stops; later logs return False."""
    def stats(self) -> dict[str, int]:
        """This process's counters by name (docs/contracts.md), e.g.
        ``evlog_events_dropped_total{reason="queue_full"}``: every family and every known
        reason always present (0 until counted); sink errors per (sink, kind) seen."""
    @property
    def on_error(self) -> Callable[[ErrorSummary], object] | None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> "Client": ...
    def __exit__(self, *args: object) -> bool: ...

def configure(
    path: Union[str, PathLike[str], None] = None,
    *,
    on_error: Callable[[ErrorSummary], object] | None = None,
    atexit_timeout: float | None = None,
    **settings: Any,
) -> Client:
    """Builds a Client and makes it the module default (the previous default is shut down).
    ``atexit_timeout``: seconds the interpreter-exit hook waits for delivery (default 5).
    Raises ConfigError, or its subclass SchemaError or SinkError, as ``Client()`` does."""

def log(
    namespace: str,
    type: str,
    event: Mapping[str, Value],
    *,
    time: datetime.datetime | int | float | None = None,
    id: str | None = None,
) -> bool:
    """``Client.log`` on the default client (created from the environment on first use).

    Never raises ConfigError: when ``configure()`` was not called and the default configuration
    does not work, the error is logged once (ERROR, logger ``evlog``) and every call returns
    False, counted as ``evlog_events_dropped_total{reason="not_configured"}`` in ``stats()``."""

def flush(timeout: float = 5.0) -> bool: ...
def shutdown(timeout: float = 5.0) -> bool: ...
def stats() -> dict[str, int]:
    """The default client's counters plus ``evlog_events_dropped_total{reason="not_configured"}``
    (also counted in ``evlog_events_accepted_total``); all 0 but those without a working
    configuration."""
def get_client() -> Client:
    """The default client, created from the environment on first use (raises ConfigError)."""
def to_json(event: Mapping[str, Value]) -> str:
    """The JSON text log() would queue for ``event``."""
