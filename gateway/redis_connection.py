"""The hot path's Redis connections: redis-py's asyncio connections with the C command packer.

redis-py's asyncio `Connection.pack_command` encodes every argument in Python; its sync
client packs with hiredis (`HiredisRespSerializer`). A metering script call carries ~40
arguments, and the C packer took a 43-argument EVALSHA from 224 to 146 µs of CPU per call on
the benchmark machine (5,000 sequential calls). Same bytes on the wire, same DataError for
arguments Redis cannot take. `pool_from_url` builds a pool of these for any URL scheme
(redis://, rediss://, unix://), as `ConnectionPool.from_url` would. `pack_many` packs a whole
batch of script calls (gateway.script_batch) for one write.
"""

from __future__ import annotations

from typing import Any, TypeVar

from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.connection import HIREDIS_AVAILABLE, HiredisRespSerializer
from redis.exceptions import DataError

if HIREDIS_AVAILABLE:
    from hiredis import pack_command

PoolT = TypeVar("PoolT", bound=ConnectionPool)


class _HiredisPacking(AbstractConnection):
    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        if not HIREDIS_AVAILABLE:
            return super().pack_command(*args)
        return self._packer.pack(*args)


class HiredisPackingConnection(_HiredisPacking, Connection):
    pass


class HiredisPackingUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


class HiredisPackingSSLConnection(_HiredisPacking, SSLConnection):
    pass


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: HiredisPackingConnection,
    UnixDomainSocketConnection: HiredisPackingUnixConnection,
    SSLConnection: HiredisPackingSSLConnection,
}


def pool_from_url(pool_class: type[PoolT], url: str, **kwargs: Any) -> PoolT:
    """`pool_class.from_url(url, **kwargs)`, with connections that pack in C."""
    options = {**kwargs, **parse_url(url)}
    connection_class = options.get("connection_class", Connection)
    options["connection_class"] = _PACKING.get(connection_class, connection_class)
    return pool_class(**options)


def pack_many(connection: AbstractConnection, commands: list[tuple[Any, ...]]) -> list[bytes]:
    """Commands of str, bytes and int arguments, packed for one write: straight to hiredis
    (redis-py's path re-checks every argument's type in Python first)."""
    if not HIREDIS_AVAILABLE:
        return connection.pack_commands(commands)
    try:
        return [b"".join([pack_command(command) for command in commands])]
    except TypeError as exc:
        raise DataError(exc) from None
