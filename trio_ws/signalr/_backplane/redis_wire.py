"""What the Redis backplane keeps in Redis and sends between workers. Pure: no I/O.

Everything of one hub lives under a prefix, ``trio_ws:Chat`` say (``P``):

==========================  =================================================================
``P:w:{worker}``            the worker's heartbeat: a string that expires (``presence_ttl``)
``P:workers``               set of the workers that have registered
``P:w:{worker}:c``          set of that worker's connection ids
``P:c:{id}``                hash: ``w`` the worker holding the connection, ``u`` its user
``P:c:{id}:g``              set of the groups the connection is in
``P:g:{group}``             set of the connection ids in a group (members, counts)
``P:u:{user}``              set of a user's connection ids (presence)
``P:t:{token}``             hash: a connection by its token: ``s`` ``p`` (pending: negotiated,
                            expiring after the handshake window) or ``h`` (held), ``w`` the
                            worker holding it, ``i`` its id, ``u`` its user, ``r`` stateful reconnect
``P:w:{worker}:t``          set of the tokens that worker holds
``P:all`` (channel)         sends, which every worker filters for its own connections
``P:w:{worker}`` (channel)  requests to one worker (group changes, client results) and replies
==========================  =================================================================

Rules of this module:

* The worker holding a connection is the only one that writes its entries
  (``CONNECT``, ``DISCONNECT``, ``JOIN``, ``LEAVE``, ``REBUILD``): its own
  tables are the truth, and Redis is the shared copy others read. Another
  worker that wants to change a connection's groups asks the holder.
* Every change is one Lua script, so no reader sees half of one. The scripts
  touch keys they compute, which a single Redis or Valkey server allows and
  Redis Cluster does not: the backplane is for one server (or a replica set
  behind one address), not a cluster.
* A worker whose heartbeat has expired is reaped by the next heartbeat of
  any other: its connections leave their groups and users, so presence
  expires with the worker that held it.
* A pending token is taken by one worker only (``CLAIM`` checks and takes
  it in one step); a held token goes with its worker (``reap``).
* Messages between workers are MessagePack arrays whose first item says the
  kind. Consecutive messages for one channel may travel as one ``Batch``
  (one PUBLISH, one message for every subscriber to read), in order.
  Argument values travel as the hub protocols' own hooks turn them into
  MessagePack (``_protocol/values.py``), so a receiver encodes them for its
  clients exactly as the sender would have.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from .._protocol.values import packb
from .base import Audience

__all__ = [
    "CONNECT",
    "DISCONNECT",
    "HEARTBEAT",
    "JOIN",
    "LEAVE",
    "LEAVE_WORKER",
    "REBUILD",
    "SCRIPTS",
    "CLAIM",
    "HOLD",
    "PENDING",
    "RELEASE",
    "Ack",
    "Ask",
    "Batch",
    "Cancel",
    "GroupChange",
    "Invoke",
    "Keys",
    "Kind",
    "Message",
    "Probe",
    "Result",
    "Send",
    "decode",
    "encode",
    "rebuild_arguments",
]


class Keys:
    """The key and channel names of one hub's prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.all = f"{prefix}:all"
        self.workers = f"{prefix}:workers"

    def worker_channel(self, worker: str) -> str:
        return f"{self.prefix}:w:{worker}"

    def connection(self, connection_id: str) -> str:
        return f"{self.prefix}:c:{connection_id}"

    def group(self, group: str) -> str:
        return f"{self.prefix}:g:{group}"

    def user(self, user_id: str) -> str:
        return f"{self.prefix}:u:{user_id}"

    def token(self, token: str) -> str:
        return f"{self.prefix}:t:{token}"


# -- the scripts: ARGV[1] is always the prefix ------------------------------------------

_HELPERS = """
local function drop(p, id)
  local key = p .. ':c:' .. id
  local w = redis.call('HGET', key, 'w')
  local u = redis.call('HGET', key, 'u')
  for _, g in ipairs(redis.call('SMEMBERS', key .. ':g')) do
    redis.call('SREM', p .. ':g:' .. g, id)
  end
  redis.call('DEL', key, key .. ':g')
  if u then redis.call('SREM', p .. ':u:' .. u, id) end
  if w then redis.call('SREM', p .. ':w:' .. w .. ':c', id) end
end
local function reap(p, w)
  local n = 0
  for _, id in ipairs(redis.call('SMEMBERS', p .. ':w:' .. w .. ':c')) do
    drop(p, id)
    n = n + 1
  end
  for _, t in ipairs(redis.call('SMEMBERS', p .. ':w:' .. w .. ':t')) do
    redis.call('DEL', p .. ':t:' .. t)
  end
  redis.call('DEL', p .. ':w:' .. w .. ':c', p .. ':w:' .. w, p .. ':w:' .. w .. ':t')
  redis.call('SREM', p .. ':workers', w)
  return n
end
local function connect(p, w, id, u)
  local key = p .. ':c:' .. id
  redis.call('HSET', key, 'w', w)
  if u ~= '' then
    redis.call('HSET', key, 'u', u)
    redis.call('SADD', p .. ':u:' .. u, id)
  end
  redis.call('SADD', p .. ':w:' .. w .. ':c', id)
end
"""

CONNECT = (
    _HELPERS
    + """
-- ARGV: prefix, worker, connection id, user id ('' for none)
connect(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""
)

DISCONNECT = (
    _HELPERS
    + """
-- ARGV: prefix, connection id
drop(ARGV[1], ARGV[2])
return 1
"""
)

JOIN = """
-- ARGV: prefix, connection id, group. Only a connection that is registered joins.
local key = ARGV[1] .. ':c:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('SADD', ARGV[1] .. ':g:' .. ARGV[3], ARGV[2])
redis.call('SADD', key .. ':g', ARGV[3])
return 1
"""

LEAVE = """
-- ARGV: prefix, connection id, group
redis.call('SREM', ARGV[1] .. ':g:' .. ARGV[3], ARGV[2])
redis.call('SREM', ARGV[1] .. ':c:' .. ARGV[2] .. ':g', ARGV[3])
return 1
"""

HEARTBEAT = (
    _HELPERS
    + """
-- ARGV: prefix, worker, ttl in ms, description. Renews this worker's heartbeat, reaps the
-- workers whose heartbeat has expired. Returns {1 if this worker's heartbeat was still there,
-- live workers, then each reaped worker and its connection count}.
local p, me = ARGV[1], ARGV[2]
local alive = redis.call('EXISTS', p .. ':w:' .. me)
redis.call('SET', p .. ':w:' .. me, ARGV[4], 'PX', ARGV[3])
redis.call('SADD', p .. ':workers', me)
local out = {alive, 0}
for _, w in ipairs(redis.call('SMEMBERS', p .. ':workers')) do
  if redis.call('EXISTS', p .. ':w:' .. w) == 0 then
    table.insert(out, w)
    table.insert(out, reap(p, w))
  end
end
out[2] = redis.call('SCARD', p .. ':workers')
return out
"""
)

REBUILD = (
    _HELPERS
    + """
-- ARGV: prefix, worker, ttl in ms, description, then per connection: id, user ('' for none),
-- the number of its groups, its groups. Replaces everything this worker had with its own tables.
local p, me = ARGV[1], ARGV[2]
for _, id in ipairs(redis.call('SMEMBERS', p .. ':w:' .. me .. ':c')) do drop(p, id) end
redis.call('SET', p .. ':w:' .. me, ARGV[4], 'PX', ARGV[3])
redis.call('SADD', p .. ':workers', me)
local i, n = 5, 0
while i <= #ARGV do
  local id, u, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  connect(p, me, id, u)
  for j = 1, count do
    local g = ARGV[i + 2 + j]
    redis.call('SADD', p .. ':g:' .. g, id)
    redis.call('SADD', p .. ':c:' .. id .. ':g', g)
  end
  i = i + 3 + count
  n = n + 1
end
return n
"""
)

LEAVE_WORKER = (
    _HELPERS
    + """
-- ARGV: prefix, worker. The worker stops: its connections and its heartbeat go.
return reap(ARGV[1], ARGV[2])
"""
)

PENDING = """
-- ARGV: prefix, token, connection id, user ('' for none), stateful reconnect ('1' or '0'), ttl in ms,
-- then the negotiate's traceparent and tracestate, if it had them (tracing on)
local key = ARGV[1] .. ':t:' .. ARGV[2]
redis.call('HSET', key, 's', 'p', 'i', ARGV[3], 'u', ARGV[4], 'r', ARGV[5])
if ARGV[7] then redis.call('HSET', key, 'tp', ARGV[7], 'ts', ARGV[8]) end
redis.call('PEXPIRE', key, ARGV[6])
return 1
"""

CLAIM = """
-- ARGV: prefix, worker, token. A pending token becomes the worker's:
-- {id, user, stateful, traceparent, tracestate} (the last two nil when not recorded), or nil.
local key = ARGV[1] .. ':t:' .. ARGV[3]
if redis.call('HGET', key, 's') ~= 'p' then return false end
redis.call('HSET', key, 's', 'h', 'w', ARGV[2])
redis.call('PERSIST', key)
redis.call('SADD', ARGV[1] .. ':w:' .. ARGV[2] .. ':t', ARGV[3])
return redis.call('HMGET', key, 'i', 'u', 'r', 'tp', 'ts')
"""

RELEASE = """
-- ARGV: prefix, worker, token. The worker's connection for that token has ended.
local key = ARGV[1] .. ':t:' .. ARGV[3]
if redis.call('HGET', key, 'w') == ARGV[2] then redis.call('DEL', key) end
redis.call('SREM', ARGV[1] .. ':w:' .. ARGV[2] .. ':t', ARGV[3])
return 1
"""

HOLD = """
-- ARGV: prefix, worker, then tokens. After REBUILD: the worker holds exactly these tokens.
local p, me = ARGV[1], ARGV[2]
for _, t in ipairs(redis.call('SMEMBERS', p .. ':w:' .. me .. ':t')) do
  if redis.call('HGET', p .. ':t:' .. t, 'w') == me then redis.call('DEL', p .. ':t:' .. t) end
end
redis.call('DEL', p .. ':w:' .. me .. ':t')
for i = 3, #ARGV do
  redis.call('HSET', p .. ':t:' .. ARGV[i], 's', 'h', 'w', me)
  redis.call('SADD', p .. ':w:' .. me .. ':t', ARGV[i])
end
return #ARGV - 2
"""


SCRIPTS = (CONNECT, DISCONNECT, JOIN, LEAVE, HEARTBEAT, REBUILD, LEAVE_WORKER, PENDING, CLAIM, RELEASE, HOLD)


def rebuild_arguments(
    prefix: str,
    worker: str,
    ttl_ms: int,
    description: str,
    connections: Iterable[tuple[str, str | None, Iterable[str]]],
) -> list[str]:
    """ARGV for ``REBUILD``: each connection as (id, user, groups)."""
    argv = [prefix, worker, str(ttl_ms), description]
    for connection_id, user_id, groups in connections:
        group_list = list(groups)
        argv += [connection_id, user_id or "", str(len(group_list)), *group_list]
    return argv


# -- messages between workers ---------------------------------------------------------------


class Kind(enum.IntEnum):
    SEND = 1
    GROUP = 2
    ACK = 3
    INVOKE = 4
    RESULT = 5
    PROBE = 6
    ASK = 7
    CANCEL = 8
    BATCH = 9


@dataclass(frozen=True)
class Send:
    """An invocation for the clients in ``audience``; every worker delivers to its own."""

    origin: str
    audience: Audience
    target: str
    arguments: Sequence[Any]


@dataclass(frozen=True)
class GroupChange:
    """Ask the worker holding ``connection_id`` to put it in ``group`` (or take it out)."""

    origin: str
    request: str
    join: bool
    connection_id: str
    group: str


@dataclass(frozen=True)
class Ack:
    """The answer to a ``GroupChange``."""

    request: str


@dataclass(frozen=True)
class Invoke:
    """Ask the worker holding ``connection_id`` for a client result; answer within ``timeout`` s."""

    origin: str
    request: str
    connection_id: str
    target: str
    arguments: Sequence[Any]
    timeout: float | None


@dataclass(frozen=True)
class Result:
    """The answer to an ``Invoke``: the client's value, or why there is none."""

    request: str
    ok: bool
    value: Any  # the result if ok, else the error text


@dataclass(frozen=True)
class Probe:
    """A worker's message to itself through Redis: its subscription still delivers."""

    nonce: str


@dataclass(frozen=True)
class Ask:
    """Another worker's request for this one's ``on_ask`` (a forwarded HTTP request): answered
    with a ``Result`` within ``timeout`` s."""

    origin: str
    request: str
    payload: Any
    timeout: float


@dataclass(frozen=True)
class Cancel:
    """The asker no longer waits for ``request``'s answer (its client went away)."""

    request: str


@dataclass(frozen=True)
class Batch:
    """Messages published together, in order: each as ``encode`` made it."""

    messages: Sequence[bytes]


Message = Send | GroupChange | Ack | Invoke | Result | Probe | Ask | Cancel | Batch


def encode(message: Message) -> bytes:
    """``message`` as MessagePack.

    Raises:
        TypeError: an argument cannot be sent in a hub message.
    """
    match message:
        case Send(origin, audience, target, arguments):
            items: list[Any] = [  # _SEND_FIELDS
                Kind.SEND,
                origin,
                audience.everyone,
                sorted(audience.connections),
                sorted(audience.groups),
                sorted(audience.users),
                sorted(audience.excluded),
                target,
                list(arguments),
            ]
        case GroupChange(origin, request, join, connection_id, group):
            items = [Kind.GROUP, origin, request, join, connection_id, group]
        case Ack(request):
            items = [Kind.ACK, request]
        case Invoke(origin, request, connection_id, target, arguments, timeout):
            items = [Kind.INVOKE, origin, request, connection_id, target, list(arguments), timeout]
        case Result(request, ok, value):
            items = [Kind.RESULT, request, ok, value]
        case Probe(nonce):
            items = [Kind.PROBE, nonce]
        case Ask(origin, request, payload, timeout):
            items = [Kind.ASK, origin, request, payload, timeout]
        case Cancel(request):
            items = [Kind.CANCEL, request]
        case Batch(messages):
            items = [Kind.BATCH, list(messages)]
    return packb(items)


# A Send on the wire: [kind, origin, everyone, connections, groups, users, excluded, target, arguments].
_SEND_FIELDS = (
    "kind",
    "origin",
    "everyone",
    "connections",
    "groups",
    "users",
    "excluded",
    "target",
    "arguments",
)


def sends_prefix(origin: str) -> bytes:
    """The first bytes of every ``Send`` that ``origin`` encodes.

    A worker hears its own sends back on ``P:all`` and has already delivered
    them to its own connections; ``data.startswith(sends_prefix(me))`` tells
    it to skip one without decoding it.
    """
    header: bytes = msgpack.Packer().pack_array_header(len(_SEND_FIELDS))
    kind: bytes = msgpack.packb(Kind.SEND.value)
    name: bytes = msgpack.packb(origin)
    return header + kind + name


def decode(data: bytes) -> Message | None:
    """The message in ``data``; ``None`` for a kind this version does not know.

    Raises:
        ValueError: ``data`` is not a message (another program publishing on the channel).
    """
    try:
        items = msgpack.unpackb(data, raw=False, timestamp=3, strict_map_key=False)
        kind = items[0]
        match kind:
            case Kind.SEND:
                audience = Audience(
                    everyone=bool(items[2]),
                    connections=frozenset(items[3]),
                    groups=frozenset(items[4]),
                    users=frozenset(items[5]),
                    excluded=frozenset(items[6]),
                )
                return Send(items[1], audience, items[7], items[8])
            case Kind.GROUP:
                return GroupChange(items[1], items[2], bool(items[3]), items[4], items[5])
            case Kind.ACK:
                return Ack(items[1])
            case Kind.INVOKE:
                return Invoke(items[1], items[2], items[3], items[4], items[5], items[6])
            case Kind.RESULT:
                return Result(items[1], bool(items[2]), items[3])
            case Kind.PROBE:
                return Probe(items[1])
            case Kind.ASK:
                return Ask(items[1], items[2], items[3], float(items[4]))
            case Kind.CANCEL:
                return Cancel(items[1])
            case Kind.BATCH:
                if not isinstance(items[1], list) or not all(isinstance(m, bytes) for m in items[1]):
                    raise ValueError("a batch holds encoded messages")
                return Batch(items[1])
    except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a backplane message: {exc}") from None
    return None
