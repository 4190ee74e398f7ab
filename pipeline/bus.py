"""The message bus: Redis keys, queues and per-stream frame accounting.

Every stage talks to the others only through this module: messages of the stage's type
(``pipeline/stages.py``: :class:`~pipeline.record.FrameBatch`,
:class:`~pipeline.record.TrackJob` or a :class:`~pipeline.record.SinkMessage`), as JSON,
never pickle: jobs on rq queues (rq's JSON serializer) for the model stages, entries of
Redis streams for the track and sink stages (:meth:`Bus.send`), and Redis keys for what
stages share:

* ``queue:<stage>``: a stream stage's messages, a Redis stream read by the consumer group
  ``workers`` (each entry: ``p``, the payload, and ``n``, the runs it had); an entry is
  its worker's until done (acknowledged and deleted, :meth:`Bus.entry_done`) or sent
  again (:meth:`Bus.entry_again`: a failed run, or a dead worker's, by the watchdog of
  ``workers/base.py``), ``failed:<stage>`` holding those that failed three times or must
  not run;

* ``detected:<stream>:<session>``: the ordered buffer, a hash of frames by ``seq``
  waiting for the track stage (``buffer_*``); detect workers finish out of order, the
  track stage takes them strictly in sequence, and a frame leaves it only when the hold
  that consumed it ends with its lock held (``track_end``): a track worker that dies
  mid-hold leaves its frames to the next;
* ``encodings:<stream>:<session>``: a list of :class:`~pipeline.record.Encodings` the
  recognize stage sends the track stage for re-identification (``send_encodings``); a
  hold reads them as it begins and removes those it applied as it ends (``track_end``);
* ``tracker:<stream>:<session>``: the track stage's state (JSON), its only writer being
  the track stage, under ``tracker-lock:<stream>:<session>`` (a random token, as
  redis-py's ``Lock``);
* ``track-pending:<stream>:<session>``: a track job of the stream waits in the queue; set
  with the job by the poke that enqueued it, cleared by the job as it starts, so a stream
  has at most one track job waiting however often it is poked (``poke_track``,
  ``track_begin``);
* ``detecting:<stream>:<session>``: a live camera's frames sent to detection and not yet
  detected (a sorted set of ``seq`` by capture time): the capture sends a frame to
  detection only while fewer than ``capture.live_max_in_flight`` are in flight
  (``detections_sent``, ``detect_room``; the detect stage's results remove them);
* ``streams``, ``stream:<stream>/<session>``: registered sessions and their frame counts;
  ``accounted:<stream>:<session>:<chunk>``: bitmaps of the frames (by ``seq``, one key per
  :data:`ACCOUNT_CHUNK` frames) the sink counted, so a retried batch is never counted
  twice (``account_frames``);
* ``dead:<stage>``: queue entries a worker could not read (undecodable, oversized), set
  aside with the reason (``dead_letter``);
* ``latest:<stream>``: the newest frame the sink stored of a stream (a
  :class:`~pipeline.record.FrameRecord` as JSON, faces without encodings; its image is
  the frame key's), for the web UI's live view; it expires with the frames
  (``set_latest``, ``latest``);
* ``alive:<worker>``: a worker's heartbeat, expiring ``workers.job_recovery_s`` after the
  last beat; the jobs of a worker without one are requeued (``workers/base.py``).

Every per-session key expires ``redis.session_ttl_s`` after its last write, so an
abandoned session leaves nothing behind; a session that runs for months keeps only the
bitmap chunks written in the last ``session_ttl_s``. The one global key that grows with
sessions, the ``streams`` registry, is pruned by :meth:`Bus.prune_sessions` (the sink
runs it periodically): a session whose counts expired leaves the registry.

Key and queue names all start with ``redis.prefix`` so several pipelines can share one
Redis server.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any, NamedTuple

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.lock import Lock
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from pipeline.record import Encodings, FrameBatch, FrameRecord, TrackJob
from pipeline.stages import stage as stage_spec

# Frames per accounted-bitmap key (128 kB; 11.6 hours of a 25 frames/s camera): a session
# that runs for months keeps only the chunks written within redis.session_ttl_s, instead
# of one bitmap as long as the session (SETBIT allocates up to the highest offset).
ACCOUNT_CHUNK = 1 << 20

# account_frames: KEYS = counts hash, bitmap chunk 1, chunk 2, ...;
# ARGV = ttl, then (index of the seq's chunk in KEYS, bit offset in the chunk, seq, field,
# second field or '') per frame. A frame is counted under its field(s) only the first time
# its seq is accounted.
_ACCOUNT_LUA = """
local new = {}
for i = 2, #ARGV, 5 do
  if redis.call('SETBIT', KEYS[tonumber(ARGV[i])], ARGV[i + 1], 1) == 0 then
    redis.call('HINCRBY', KEYS[1], ARGV[i + 3], 1)
    if ARGV[i + 4] ~= '' then
      redis.call('HINCRBY', KEYS[1], ARGV[i + 4], 1)
    end
    new[#new + 1] = ARGV[i + 2]
  end
end
for k = 1, #KEYS do
  redis.call('EXPIRE', KEYS[k], ARGV[1])
end
return new
"""


# take_run(buffer, counts, below, seq, most): drops the frames older than `below` (consumed by
# an earlier hold, or given up as lost before they arrived), then returns the consecutive
# frames from seq on, with how many later frames wait and the stream's end_seq (false while
# the source goes on). The frames returned stay in the buffer: the hold that consumes them
# removes them as it ends holding the lock (track_end), so a worker that dies mid-hold
# leaves them for the next one.
_TAKE_RUN_FN = """
local function take_run(buffer, counts, below, seq, most)
  local ahead = 0
  for _, k in ipairs(redis.call('HKEYS', buffer)) do
    local n = tonumber(k)
    if n < below then
      redis.call('HDEL', buffer, k)
    elseif n >= seq then
      ahead = ahead + 1
    end
  end
  local out = {}
  while #out < most do
    local v = redis.call('HGET', buffer, tostring(seq))
    if not v then
      break
    end
    out[#out + 1] = v
    seq = seq + 1
  end
  return {out, ahead - #out, redis.call('HGET', counts, 'end_seq')}
end
"""

# take_run: KEYS = the ordered buffer, the stream's counts hash; ARGV = the seq below which
# frames are dropped, the next seq, max frames.
_TAKE_RUN_LUA = (
    _TAKE_RUN_FN
    + """
return take_run(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
"""
)


# hold(frame, holders, add, remove): change who holds a frame's image (hold_frames). A frame
# without a holders set is held by "pipeline" (implicitly: the stages before tracking). A
# frame whose holders set is empty afterwards is deleted (returns 1); a set that stays
# expires with its frame; a set left with "pipeline" alone goes back to being implicit.
_HOLD_FN = """
local function hold(frame, holders, add, remove)
  if redis.call('EXISTS', holders) == 0 then
    redis.call('SADD', holders, 'pipeline')
  end
  for _, h in ipairs(add) do
    redis.call('SADD', holders, h)
  end
  for _, h in ipairs(remove) do
    redis.call('SREM', holders, h)
  end
  local n = redis.call('SCARD', holders)
  if n == 0 then
    return redis.call('DEL', frame)
  elseif n == 1 and redis.call('SISMEMBER', holders, 'pipeline') == 1 then
    redis.call('DEL', holders)
  else
    local ttl = redis.call('PTTL', frame)
    if ttl > 0 then
      redis.call('PEXPIRE', holders, ttl)
    else
      redis.call('DEL', holders)
    end
  end
  return 0
end
"""

# hold_frames: KEYS = frame key 1, its holders set 1, frame key 2, holders 2, ...;
# ARGV = a JSON list, per frame, of [holders to add, holders to remove].
_HOLD_LUA = (
    _HOLD_FN
    + """
local changes = cjson.decode(ARGV[1])
local deleted = 0
for i, change in ipairs(changes) do
  deleted = deleted + hold(KEYS[2 * i - 1], KEYS[2 * i], change[1], change[2])
end
return deleted
"""
)

# set_latest: KEYS = the stream's latest key; ARGV = the record's JSON, ttl (s), the record's
# frame key ('' if none), the prefix of holders keys. The frame the record replaces loses its
# "latest" holder.
_LATEST_LUA = (
    _HOLD_FN
    + """
local old = redis.call('GETSET', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if old then
  local key = cjson.decode(old)['key']
  if type(key) == 'string' and key ~= '' and key ~= ARGV[3] then
    hold(key, ARGV[4] .. key, {}, {'latest'})
  end
end
return 0
"""
)


# poke(flag, first): ARGV from index `first` on = the flag's ttl (ms), the number of
# commands, then per command its number of words and its words (rq's enqueue of a track job,
# as rq would send it). Runs the commands only if the flag was not set: at most one track
# job of a stream waits in the queue at a time. Returns 1 if the job was enqueued, else 0.
_POKE_FN = """
local function poke(flag, first)
  if not redis.call('SET', flag, '1', 'NX', 'PX', ARGV[first]) then
    return 0
  end
  local i = first + 2
  for _ = 1, tonumber(ARGV[first + 1]) do
    local n = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
  return 1
end
"""

# poke: KEYS = the stream's pending flag; ARGV = as poke() reads them.
_POKE_LUA = (
    _POKE_FN
    + """
return poke(KEYS[1], 1)
"""
)


# put_behind: KEYS = the ordered buffer, the stream session's detections in flight, the
# stream's pending-track-job flag; ARGV = ttl, the number of frames, seq and record JSON per
# frame, then the poke's arguments (poke()). Writes the frames; pokes the track stage unless
# a detection of an earlier frame is in flight (its result's write pokes it, and it then
# finds these frames too). Returns 1 (the caller need not poke).
_PUT_BEHIND_LUA = (
    _POKE_FN
    + """
local first = nil
local last = 2 + 2 * tonumber(ARGV[2])
for i = 3, last, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  local s = tonumber(ARGV[i])
  if first == nil or s < first then
    first = s
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if tonumber(m) < first then
    return 1
  end
end
poke(KEYS[3], last + 1)
return 1
"""
)


# track_begin: KEYS = the pending flag, the tracker lock, the tracker state, the encodings,
# the ordered buffer, the stream's counts hash; ARGV = lock token, lock ttl (ms), max frames,
# the prefix of the workers' heartbeat keys. Clears the flag first (a poke from now on
# enqueues a new job; whatever came before is read by this hold or, if another worker holds
# the lock, by that worker's check as it releases it), takes the lock (also from a holder
# that is dead: its token names a worker, WORKER|RANDOM, whose heartbeat key is gone);
# with it, returns the state (false if none), the encodings waiting and the run of frames
# from the state's next seq on (take_run), and whether the lock was a dead holder's;
# without it, false. The encodings and frames stay where they are until the hold ends
# (track_end).
_TRACK_BEGIN_LUA = (
    _TAKE_RUN_FN
    + """
redis.call('DEL', KEYS[1])
local took_over = 0
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local holder = string.match(redis.call('GET', KEYS[2]) or '', '^(.+)|[^|]*$')
  if not holder or redis.call('EXISTS', ARGV[4] .. holder) == 1 then
    return false
  end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  took_over = 1
end
local enc = redis.call('LRANGE', KEYS[4], 0, -1)
local state = redis.call('GET', KEYS[3])
local seq = 0
if state then
  seq = tonumber(cjson.decode(state)['next_seq']) or 0
end
return {state, enc, take_run(KEYS[5], KEYS[6], seq, seq, tonumber(ARGV[3])), took_over}
"""
)


# track_end: KEYS = the tracker lock, the ordered buffer, the encodings, the tracker state;
# ARGV = lock token, the next seq, the state (JSON), its ttl (s), the number of encodings
# the hold applied. If the token still holds the lock: writes the state, removes the frames
# the hold consumed (older than the next seq) and the encodings it applied (the first ones:
# later ones were appended) and releases the lock; else (it expired, and perhaps another
# worker holds it now) changes nothing. Says whether work waits: returns {released 1/0,
# frame `next seq` or encodings waiting 1/0}.
_TRACK_END_LUA = """
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[4])
  local seq = tonumber(ARGV[2])
  for _, k in ipairs(redis.call('HKEYS', KEYS[2])) do
    if tonumber(k) < seq then
      redis.call('HDEL', KEYS[2], k)
    end
  end
  if tonumber(ARGV[5]) > 0 then
    redis.call('LTRIM', KEYS[3], ARGV[5], -1)
  end
  redis.call('DEL', KEYS[1])
  released = 1
end
local more = 0
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 or redis.call('LLEN', KEYS[3]) > 0 then
  more = 1
end
return {released, more}
"""

# a stream's pending-track-job flag lives this long: a job lost with its flag set (deleted
# by hand, failed before it ran) delays the stream's tracking at most this much
# Stream stages (``transport: stream`` in pipeline/stages.py): the consumer group that
# reads a stage's stream, and how often an entry runs before it is filed as failed
# (the first run and two retries, as an rq job of the bus has).
STREAM_GROUP = "workers"
STREAM_ATTEMPTS = 3

# entry_again: KEYS = the stage's stream, its failed list; ARGV = group, entry id, attempts
# allowed, stage, reason, time. The entry leaves the stream (acknowledged and deleted); it is
# added again at its end with one more attempt counted unless that makes `attempts allowed`
# (0: at once), when it is filed in the failed list instead (the newest 1000 kept). Returns
# 1 (added again), 2 (filed as failed) or 0 (no such entry: done or recovered meanwhile).
_ENTRY_AGAIN_LUA = """
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if #e == 0 then
  return 0
end
local f = e[1][2]
local p, n = '', 0
for i = 1, #f, 2 do
  if f[i] == 'p' then
    p = f[i + 1]
  elseif f[i] == 'n' then
    n = tonumber(f[i + 1]) or 0
  end
end
n = n + 1
if n < tonumber(ARGV[3]) then
  redis.call('XADD', KEYS[1], '*', 'p', p, 'n', n)
  return 1
end
redis.call('LPUSH', KEYS[2], cjson.encode({stage = ARGV[4], reason = ARGV[5],
  at = tonumber(ARGV[6]), attempts = n, payload = p}))
redis.call('LTRIM', KEYS[2], 0, 999)
return 2
"""


# entry_counts: KEYS = a stage's stream; ARGV = group, the prefix of the workers' heartbeat
# keys. Returns {entries, of them taken by a worker whose heartbeat lives and not done} (0, 0
# before the stream or its group exists); a dead worker's are waiting (the watchdog sends
# them again). Looks at the first 1000 taken entries.
_ENTRY_COUNTS_LUA = """
local n = redis.call('EXISTS', KEYS[1]) == 1 and redis.call('XLEN', KEYS[1]) or 0
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000)
if type(p) ~= 'table' or p['err'] then
  return {n, 0}
end
local alive = {}
local running = 0
for _, e in ipairs(p) do
  local w = e[2]
  if alive[w] == nil then
    alive[w] = redis.call('EXISTS', ARGV[2] .. w) == 1
  end
  if alive[w] then
    running = running + 1
  end
end
return {n, running}
"""


# prune_consumers: KEYS = a stage's stream; ARGV = group, idle ms, the prefix of the workers'
# heartbeat keys. Deletes the group's consumers that hold no entry, were idle that long and
# whose worker's heartbeat is gone (workers are named per process: without this the group
# would list every worker that ever ran). In one script, so no entry is delivered to a
# consumer between the check and the delete. Returns how many were deleted.
_PRUNE_CONSUMERS_LUA = """
local cs = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(cs) ~= 'table' or cs['err'] then
  return 0
end
local gone = 0
for _, c in ipairs(cs) do
  local f = {}
  for i = 1, #c, 2 do
    f[c[i]] = c[i + 1]
  end
  if tonumber(f['pending']) == 0 and tonumber(f['idle']) >= tonumber(ARGV[2])
      and redis.call('EXISTS', ARGV[3] .. f['name']) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    gone = gone + 1
  end
end
return gone
"""


# requeue_failed: KEYS = a stage's stream, its failed list. Sends every failed message back
# to the stream, oldest first, its attempts counted from 0 again; returns how many.
_REQUEUE_FAILED_LUA = """
local n = 0
while true do
  local r = redis.call('RPOP', KEYS[2])
  if not r then
    return n
  end
  redis.call('XADD', KEYS[1], '*', 'p', cjson.decode(r)['payload'], 'n', 0)
  n = n + 1
end
"""


class QueueEntry(NamedTuple):
    """One message of a stream stage as a worker read it: its entry id, its payload as
    sent (JSON bytes; None if the entry has none) and how many runs it had before."""

    id: str
    payload: bytes | None
    attempts: int


POKE_TTL_S = 10.0


class TakenRun(NamedTuple):
    """What :meth:`Bus.buffer_take_run` took."""

    frames: list[FrameRecord]  # consecutive, from the seq asked for
    waiting: int  # later frames in the buffer, after the run (the seq after it is missing)
    end_seq: int | None  # the last seq of a finite source that ended, else None


class TrackBegun(NamedTuple):
    """What :meth:`Bus.track_begin` found once it held the stream's lock."""

    state: dict[str, Any] | None  # the tracker state (None: the stream's first frame)
    encodings: list[Encodings]  # taken from the stream's list, in order
    taken: TakenRun  # the frames from the state's next seq on (buffer_take_run)
    most: int  # at most this many frames were taken
    took_over: bool = False  # the lock was a dead worker's (its hold never ended)


class SessionPrune(NamedTuple):
    """What :meth:`Bus.prune_sessions` did."""

    pruned: list[str]  # ``stream/session`` ids removed from the registry
    live_streams: set[str]  # streams with a session still in the registry


def read_entry_counts(got: list[Any]) -> tuple[int, int]:
    """``(waiting, running)`` from :meth:`Bus.entry_counts`'s script result."""
    total, running = int(got[0]), int(got[1])
    return max(0, total - running), running


def connect(url: str) -> redis.Redis:
    """A Redis client for ``redis://``, ``rediss://`` or ``unix://`` URLs.

    redis-py itself retries a failed command only briefly (a blip); a longer outage
    surfaces as ``ConnectionError`` to the caller's :class:`pipeline.retry.RedisHealth`,
    which waits it out with backoff, logs and counts it. A server that stops answering
    (hung, partitioned) counts as down after ``socket_timeout``.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=30,  # a hung server is an outage too (rq raises it for its BLMOVE)
        health_check_interval=30,
        retry=RedisRetry(ExponentialWithJitterBackoff(base=0.02, cap=0.2), retries=2),
    )


def counts_done(c: dict[str, int]) -> bool:
    """A finite stream's counts (:meth:`Bus.stream_counts`) say every captured frame is
    processed or dropped."""
    if "end_seq" not in c:
        return False
    dropped = sum(v for k, v in c.items() if k.startswith("dropped:"))
    return c.get("captured", 0) == c.get("processed", 0) + dropped


def sample_holder(sample: FrameRecord) -> str:
    """Who holds a sampled frame's image from the track stage until the sink stored its
    samples (:meth:`Bus.hold_frames`): the sample of these tracks (a face of one track in
    one frame is sampled at most once, so the name is unique)."""
    return "sample:" + ",".join(sorted(str(f.track_id) for f in sample.faces))


def detection_rate(c: dict[str, int]) -> float | None:
    """The share of a stream's processed frames that went through detection (the rest
    were tracked without: ``undetected:schedule``, ``undetected:load``); None before any."""
    undetected = sum(v for k, v in c.items() if k.startswith("undetected:"))
    total = c.get("detected", 0) + undetected
    return c.get("detected", 0) / total if total else None


class Bus:
    """Redis connection, queue names and key names of one pipeline."""

    def __init__(
        self, conn: redis.Redis, prefix: str = "facepipe", session_ttl_s: int = 86400
    ) -> None:
        self.conn = conn
        self.prefix = prefix
        self.session_ttl_s = session_ttl_s
        self._queues: dict[str, Queue] = {}
        self._account = conn.register_script(_ACCOUNT_LUA)
        self._take_run = conn.register_script(_TAKE_RUN_LUA)
        self._hold = conn.register_script(_HOLD_LUA)
        self._latest = conn.register_script(_LATEST_LUA)
        self._put_behind = conn.register_script(_PUT_BEHIND_LUA)
        self._entry_again = conn.register_script(_ENTRY_AGAIN_LUA)

    # ----- keys ----------------------------------------------------------------
    def key(self, *parts: object) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def frame_key(self, rec: FrameRecord) -> str:
        return self.key("frame", rec.stream, rec.session, rec.seq)

    def stream_id(self, stream: str, session: str) -> str:
        return f"{stream}/{session}"

    # ----- who still needs a frame's image ---------------------------------------------
    def frame_holders_key(self, frame_key: str) -> str:
        return self.key("holders", frame_key)

    def hold_frames(
        self, changes: dict[str, tuple[list[str], list[str]]], pipeline: Any = None
    ) -> None:
        """Change who still needs frames' images: ``{frame key: (holders to add, holders
        to remove)}``; a frame no holder needs any more is deleted from Redis at once
        (``redis.frame_ttl_s`` stays the safety net of a frame whose holder never comes).

        Until the track stage has seen a frame, ``pipeline`` holds it (implicitly: no
        holders set is stored); the track stage then names who needs it (``track``: a
        sampling window's best face waits in its state; ``latest``: the web UI's live
        view; ``sample:TRACK_IDS``: a sample on its way through recognize and attributes
        to the sink) and removes ``pipeline``; each lets go when it is done with it. A
        frame the track stage never saw (a sink fed by hand) is never deleted here. With
        ``pipeline``, when that is executed."""
        if not changes:
            return
        keys: list[str] = []
        for k in changes:
            keys += [k, self.frame_holders_key(k)]
        args = [json.dumps([[list(a), list(r)] for a, r in changes.values()])]
        if pipeline is not None:  # EVAL: a Script in a pipeline costs a SCRIPT EXISTS trip
            pipeline.eval(_HOLD_LUA, len(keys), *keys, *args)
        else:
            self._hold(keys=keys, args=args)

    def frame_holders(self, frame_key: str) -> set[str]:
        """Who holds a frame's image now (``{"pipeline"}`` before tracking, empty once
        deleted)."""
        if not self.conn.exists(frame_key):
            return set()
        held = {h.decode() for h in self.conn.smembers(self.frame_holders_key(frame_key))}
        return held or {"pipeline"}

    # ----- queues --------------------------------------------------------------
    def queue_name(self, stage: str) -> str:
        return stage_spec(stage).queue_name(self.prefix)

    def queue(self, stage: str) -> Queue:
        if stage not in self._queues:
            self._queues[stage] = Queue(
                self.queue_name(stage), connection=self.conn, serializer=JSONSerializer
            )
        return self._queues[stage]

    def pipeline(self) -> Any:
        """A transaction (MULTI/EXEC) for several writes and jobs (:meth:`send`) in one round
        trip: nothing of it happens before ``execute()``."""
        pipe = self.conn.pipeline()
        pipe.multi()  # rq's enqueue asks for a transaction begun before any command
        return pipe

    def send(self, stage: str, message: Any, timeout: int = 600, pipeline: Any = None) -> None:
        """Enqueue a job for ``stage`` carrying ``message``, of the stage's message type;
        with ``pipeline`` (from :meth:`pipeline`), when that is executed."""
        spec = stage_spec(stage)
        if spec.message is FrameBatch and isinstance(message, FrameRecord):
            message = FrameBatch([message])  # one frame: a batch of one
        if not isinstance(message, spec.message):
            raise TypeError(
                f"the {stage} stage takes {spec.message.__name__}, not {type(message).__name__}"
            )
        if spec.transport == "stream":
            payload = json.dumps(message.to_dict(), separators=(",", ":"))
            (self.conn if pipeline is None else pipeline).xadd(
                self.entries_key(stage), {"p": payload, "n": 0}
            )
            return
        own = pipeline is None
        if own:  # rq would take two round trips (the queue registry, then the job)
            pipeline = self.pipeline()
        self.queue(stage).enqueue(
            spec.job,
            message.to_dict(),
            job_timeout=timeout,
            result_ttl=0,
            failure_ttl=7 * 24 * 3600,
            retry=Retry(max=2),  # transient errors (a busy database, a restarted Redis)
            description=f"{stage} {getattr(message, 'stream', '')}#{getattr(message, 'seq', '')}"
            + (f"+{len(message.records) - 1}" if isinstance(message, FrameBatch) else ""),
            pipeline=pipeline,
        )
        if own:
            pipeline.execute()

    def _track_pending(self, stream: str, session: str) -> str:
        return self.key("track-pending", stream, session)

    def poke_track(self, stream: str, session: str, pipeline: Any = None) -> None:
        """Ask the track stage to look at a stream (frames or encodings are waiting): a
        track job is enqueued unless one of the stream's is waiting in the queue already
        (``track-pending:<stream>:<session>``, set with the job and cleared by the job as
        it starts, before it reads anything: :meth:`track_begin`), so no poke is missed
        and a backlog is one job, not one per poke. One round trip (with ``pipeline``,
        when that is executed)."""
        client = self.conn if pipeline is None else pipeline
        flag = self._track_pending(stream, session)
        client.eval(_POKE_LUA, 1, flag, *self._poke_argv(stream, session))

    def _poke_argv(self, stream: str, session: str) -> list[Any]:
        """The poke script's arguments: the flag's ttl and rq's enqueue of a track job."""
        rec = self.conn.pipeline()  # records rq's enqueue; never executed
        rec.multi()
        self.send("track", TrackJob(stream, session), pipeline=rec)
        argv: list[Any] = [int(POKE_TTL_S * 1000), len(rec.command_stack)]
        for args, _ in rec.command_stack:
            argv += [len(args), *args]
        rec.reset()
        return argv

    def track_pending(self, stream: str, session: str) -> bool:
        """A track job of the stream waits in the queue (its poke set the flag)."""
        return bool(self.conn.exists(self._track_pending(stream, session)))

    def track_begin(
        self, stream: str, session: str, token: str, lock_s: float, most: int
    ) -> TrackBegun | None:
        """Start one hold of the stream's track stage, in one round trip: clear the
        stream's pending flag (:meth:`poke_track`), take the tracker lock with ``token``
        and, if it was had, load the state, the encodings waiting and up to ``most``
        consecutive frames from the state's next seq on (:meth:`buffer_take_run`); they
        stay in Redis until the hold ends (:meth:`track_end`). None if another worker
        holds the lock (it looks for work again as it releases it).

        A ``token`` of the form ``WORKER|RANDOM`` names the worker that holds the lock:
        a lock whose worker's heartbeat (:meth:`beat`) is gone is taken over at once
        instead of after its ttl (``took_over``)."""
        keys = [
            self._track_pending(stream, session),
            self.key("tracker-lock", stream, session),
            self.key("tracker", stream, session),
            self._encodings(stream, session),
            self._buffer(stream, session),
            self.key("stream", self.stream_id(stream, session)),
        ]
        got = self.conn.eval(
            _TRACK_BEGIN_LUA, len(keys), *keys, token, int(lock_s * 1000), most,
            self.key("alive", ""),
        )  # fmt: skip
        if not got:
            return None
        raw, enc, (frames, waiting, end), took_over = got
        return TrackBegun(
            None if raw is None else json.loads(raw),
            [Encodings.from_dict(json.loads(e)) for e in enc],
            TakenRun(
                [FrameRecord.from_json(r) for r in frames],
                int(waiting),
                None if end is None else int(end),
            ),
            most,
            bool(took_over),
        )

    def track_end(
        self,
        stream: str,
        session: str,
        token: str,
        state: dict[str, Any],
        pipeline: Any,
        encodings: int = 0,
    ) -> None:
        """End a hold of the stream's lock in ``pipeline`` (after the hold's writes): if
        ``token`` still holds the lock, the tracker ``state`` is written, the frames the
        hold consumed (older than the state's ``next_seq``) leave the ordered buffer, so
        do the first ``encodings`` of the stream's list (those the hold applied), and the
        lock is released; a hold whose lock expired changes none of it (another worker
        may hold the stream now). The script's answer, the last of ``pipeline.execute()``'s
        results, is ``[released, work waiting]`` (frame ``next_seq`` or encodings)."""
        keys = [
            self.key("tracker-lock", stream, session),
            self._buffer(stream, session),
            self._encodings(stream, session),
            self.key("tracker", stream, session),
        ]
        pipeline.eval(
            _TRACK_END_LUA, len(keys), *keys, token, int(state["next_seq"]),
            json.dumps(state, separators=(",", ":")), self.session_ttl_s, encodings,
        )  # fmt: skip

    def depth(self, stage: str) -> int:
        """Messages waiting for a worker of ``stage`` (not those being run)."""
        if stage_spec(stage).transport == "stream":
            waiting, _ = self.entry_counts(stage)
            return waiting
        return self.queue(stage).count

    def peek(self, stage: str, count: int = 1000) -> list[dict[str, Any]]:
        """The payloads of the first ``count`` messages waiting or running on ``stage``,
        oldest first (for inspection: ``facepipe`` and tests; nothing is taken)."""
        if stage_spec(stage).transport == "stream":
            got = self.conn.xrange(self.entries_key(stage), count=count)
            return [json.loads(fields[b"p"]) for _, fields in got if b"p" in fields]
        q = self.queue(stage)
        jobs = (q.fetch_job(i) for i in q.get_job_ids(0, count - 1))
        return [j.args[0] for j in jobs if j is not None and j.args]

    def busy(self, stage: str) -> int:
        """Messages of ``stage`` a worker is running (rq: its started registry)."""
        if stage_spec(stage).transport == "stream":
            _, running = self.entry_counts(stage)
            return running
        from rq.registry import StartedJobRegistry

        return StartedJobRegistry(queue=self.queue(stage)).count

    def failed(self, stage: str) -> int:
        """Messages of ``stage`` that failed for good (rq: its failed registry; a stream
        stage: its failed list)."""
        if stage_spec(stage).transport == "stream":
            return int(self.conn.llen(self.failed_key(stage)))
        from rq.registry import FailedJobRegistry

        return FailedJobRegistry(queue=self.queue(stage)).count

    # ----- stream stages (pipeline/stages.py: transport "stream") ------------------------
    def entries_key(self, stage: str) -> str:
        """The Redis stream of a stream stage's messages."""
        return self.key("queue", stage)

    def failed_key(self, stage: str) -> str:
        """A stream stage's failed messages (JSON: stage, reason, at, attempts, payload)."""
        return self.key("failed", stage)

    def entries_group(self, stage: str) -> None:
        """Create the stage's consumer group (and its stream) unless it exists: at a
        worker's start, and after a Redis restart lost it. It reads the stream from its
        first entry, so messages sent before it existed are read too."""
        try:
            self.conn.xgroup_create(self.entries_key(stage), STREAM_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_entry(
        self, stage: str, consumer: str, block_ms: int | None, own: bool = False
    ) -> QueueEntry | None:
        """The next message of a stream stage for worker ``consumer`` (it is then the
        worker's until :meth:`entry_done` or :meth:`entry_again`), waiting up to
        ``block_ms`` (None: not at all); ``own``: the first message read before and not
        done (after an outage interrupted it), None when there is none. Creates the
        group if Redis lost it (a restart, a flush: also while the read waited)."""
        key = self.entries_key(stage)
        for last in (False, False, True):
            try:
                got = self.conn.xreadgroup(
                    STREAM_GROUP, consumer, {key: "0" if own else ">"}, count=1,
                    block=None if own else block_ms,
                )  # fmt: skip
                break
            except redis.ResponseError as exc:
                # NOGROUP: no group (yet, or lost); UNBLOCKED: the stream was deleted
                # while the read waited on it
                if last or not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                self.entries_group(stage)
        entries = got[0][1] if got else []
        if not entries:
            return None
        entry_id, fields = entries[0]
        fields = fields or {}
        try:
            attempts = int(fields.get(b"n", 0))
        except ValueError:
            attempts = 0
        return QueueEntry(entry_id.decode(), fields.get(b"p"), attempts)

    def entry_raw(self, stage: str, entry_id: str) -> bytes:
        """An entry's fields as one blob (for the dead-letter list), empty if gone."""
        got = self.conn.xrange(self.entries_key(stage), entry_id, entry_id)
        if not got:
            return b""
        return b"\n".join(k + b"=" + v for k, v in (got[0][1] or {}).items())

    def entry_done(self, stage: str, entry_id: str, pipeline: Any = None) -> None:
        """A stream stage's message is done: acknowledged and deleted (with
        ``pipeline``, when that is executed)."""
        client = self.conn if pipeline is None else pipeline
        key = self.entries_key(stage)
        client.xack(key, STREAM_GROUP, entry_id)
        client.xdel(key, entry_id)

    def entry_again(
        self, stage: str, entry_id: str, reason: str, attempts: int = STREAM_ATTEMPTS
    ) -> int:
        """A stream stage's message ran and failed (its worker raised, or died): it
        leaves the stream and is sent again with one more attempt counted, or, with
        ``attempts`` runs had (0: at once, a message that must not run), filed in the
        stage's failed list with ``reason``. Returns 1 (sent again), 2 (failed) or 0 (it
        was gone: done or recovered by someone else)."""
        keys = [self.entries_key(stage), self.failed_key(stage)]
        if len(reason) > 4000:  # a traceback's end says what failed: keep it
            reason = f"{reason[:1000]}\n[...]\n{reason[-3000:]}"
        args = [STREAM_GROUP, entry_id, attempts, stage, reason, time.time()]
        return int(self._entry_again(keys=keys, args=args))

    def entries_pending(self, stage: str, idle_s: float, count: int = 100) -> list[dict[str, Any]]:
        """Messages of a stream stage that a worker took at least ``idle_s`` ago and has
        not done: ``{message_id, consumer, time_since_delivered, times_delivered}``."""
        try:
            return list(
                self.conn.xpending_range(
                    self.entries_key(stage),
                    STREAM_GROUP,
                    min="-",
                    max="+",
                    count=count,
                    idle=int(idle_s * 1000),
                )  # fmt: skip
            )
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                return []
            raise

    def prune_consumers(self, stage: str, idle_s: float) -> int:
        """Delete the consumers of a stream stage's group that hold no message, have been
        idle ``idle_s`` and whose worker's heartbeat is gone; returns how many."""
        got = self.conn.eval(
            _PRUNE_CONSUMERS_LUA, 1, self.entries_key(stage), STREAM_GROUP,
            int(idle_s * 1000), self.key("alive", ""),
        )  # fmt: skip
        return int(got)

    def entry_counts(self, stage: str, pipeline: Any = None) -> tuple[int, int]:
        """``(waiting, running)`` messages of a stream stage, in one round trip (with
        ``pipeline``: its result, ``[entries, running]``, comes with its ``execute()``:
        :func:`read_entry_counts`)."""
        client = self.conn if pipeline is None else pipeline
        got = client.eval(
            _ENTRY_COUNTS_LUA, 1, self.entries_key(stage), STREAM_GROUP, self.key("alive", "")
        )
        return (0, 0) if pipeline is not None else read_entry_counts(got)

    def failed_entries(self, stage: str) -> list[dict[str, Any]]:
        """A stream stage's failed messages, newest first."""
        return [json.loads(r) for r in self.conn.lrange(self.failed_key(stage), 0, -1)]

    def adopt_rq_jobs(self, stage: str) -> int:
        """Move the rq jobs a stream stage's rq queue still holds (sent by a facepipe from
        before its stream transport, 2026-12-02) onto its stream; returns how many. A job
        that is not the stage's job function with one payload is set aside in the
        dead-letter list. A stream stage's worker does this as it starts."""
        from rq.job import Job

        spec = stage_spec(stage)
        if spec.transport != "stream":
            return 0
        q = self.queue(stage)
        moved = 0
        for job_id in q.get_job_ids():
            try:
                job = Job.fetch(job_id, connection=self.conn, serializer=q.serializer)
                args = job.args
                ok = job.func_name == spec.job and len(args) == 1 and isinstance(args[0], dict)
            except Exception:  # undecodable, gone: set aside below (if it is still there)
                job, ok = None, False
            if not ok:
                reason = "an rq job on a stream stage's queue that is not its job"
                self.dead_letter(stage, job_id.encode(), reason)
            pipe = self.conn.pipeline()
            if ok and job is not None:
                payload = json.dumps(job.args[0], separators=(",", ":"))
                pipe.xadd(self.entries_key(stage), {"p": payload, "n": 0})
                moved += 1
            pipe.lrem(q.key, 0, job_id)
            pipe.delete(Job.key_for(job_id))
            pipe.execute()
        return moved

    def requeue_failed(self, stage: str) -> int:
        """Send a stream stage's failed messages back to its queue (oldest first, as new
        messages: three runs again); returns how many. Atomic: a message is in the
        failed list or on the stream, never both or neither."""
        if stage_spec(stage).transport != "stream":
            raise ValueError(f"{stage} is an rq stage: its failed jobs are rq's (rq requeue)")
        keys = [self.entries_key(stage), self.failed_key(stage)]
        return int(self.conn.eval(_REQUEUE_FAILED_LUA, len(keys), *keys))

    # ----- a live camera's detections in flight (pipeline/capture.py) ------------------
    def _in_flight(self, stream: str, session: str) -> str:
        return self.key("detecting", stream, session)

    def detections_sent(self, recs: list[FrameRecord], since: float, pipeline: Any) -> None:
        """Frames ``recs`` (one live stream session) go to detection: each is in flight
        (by ``seq``, scored by its capture time) until the detect stage writes its result
        (:meth:`buffer_put_many`). Entries older than ``since`` are removed: their frames
        are dropped as stale by the detect stage anyway, or their job failed for good."""
        key = self._in_flight(recs[0].stream, recs[0].session)
        pipeline.zadd(key, {str(r.seq): r.ts for r in recs})
        pipeline.zremrangebyscore(key, "-inf", f"({since}")
        pipeline.expire(key, self.session_ttl_s)

    def detect_room(self, stream: str, session: str, since: float) -> tuple[int, int]:
        """``(jobs in the detect queue, detections of the stream session in flight that
        were captured at or after `since`)``, in one round trip."""
        pipe = self.conn.pipeline(transaction=False)
        pipe.llen(self.queue("detect").key)
        pipe.zcount(self._in_flight(stream, session), since, "+inf")
        jobs, mine = pipe.execute()
        return int(jobs), int(mine)

    def detections_in_flight(self, stream: str, session: str) -> list[int]:
        """Sequence numbers of the stream session's frames sent to detection and not yet
        detected, in order."""
        return sorted(int(s) for s in self.conn.zrange(self._in_flight(stream, session), 0, -1))

    # ----- the detect -> track ordered buffer ---------------------------------------
    def _buffer(self, stream: str, session: str) -> str:
        return self.key("detected", stream, session)

    def buffer_put(self, rec: FrameRecord) -> None:
        """Frame ``rec`` waits for the track stage; the stream's track stage is poked."""
        key = self._buffer(rec.stream, rec.session)
        pipe = self.pipeline()  # the frame and the poke: one round trip
        pipe.hset(key, str(rec.seq), rec.to_json())
        pipe.expire(key, self.session_ttl_s)
        self.poke_track(rec.stream, rec.session, pipeline=pipe)
        pipe.execute()

    def buffer_put_many(self, recs: list[FrameRecord], pipeline: Any = None) -> None:
        """Frames ``recs`` of one stream session wait for the track stage: one write and
        one poke of the stream's track stage, in one round trip (with ``pipeline``, when
        that is executed)."""
        if not recs:
            return
        key = self._buffer(recs[0].stream, recs[0].session)
        pipe = self.pipeline() if pipeline is None else pipeline
        pipe.hset(key, mapping={str(r.seq): r.to_json() for r in recs})
        pipe.expire(key, self.session_ttl_s)
        done = [str(r.seq) for r in recs if r.live and r.detected]
        if done:  # (the detect stage's results) no longer in flight
            pipe.zrem(self._in_flight(recs[0].stream, recs[0].session), *done)
        self.poke_track(recs[0].stream, recs[0].session, pipeline=pipe)
        if pipeline is None:
            pipe.execute()

    def buffer_put_behind(self, recs: list[FrameRecord], pipeline: Any = None) -> bool | None:
        """Frames ``recs`` of one live stream session that detection skipped wait for the
        track stage, like :meth:`buffer_put_many`, but the track stage is poked only when
        no detection of an earlier frame of the stream is in flight: the track stage
        cannot take these frames before that one, and its result's write pokes it (the
        check, the write and the poke are one script, so the result cannot slip in
        between). Returns whether the caller must poke the track stage itself: False (the
        script did what was needed); with ``pipeline``, None: its ``execute()`` gives the
        script's answer (1: no poke needed) among its results."""
        stream, session = recs[0].stream, recs[0].session
        args: list[object] = [self.session_ttl_s, len(recs)]
        for r in recs:
            args += [str(r.seq), r.to_json()]
        args += self._poke_argv(stream, session)
        keys = [
            self._buffer(stream, session),
            self._in_flight(stream, session),
            self._track_pending(stream, session),
        ]
        if pipeline is not None:  # EVAL: a Script in a pipeline costs a SCRIPT EXISTS trip
            pipeline.eval(_PUT_BEHIND_LUA, len(keys), *keys, *args)
            return None
        return self._put_behind(keys=keys, args=args) == 0

    def buffer_take(self, stream: str, session: str, seq: int) -> FrameRecord | None:
        """Remove and return frame ``seq`` of the stream, or None if it is not there."""
        pipe = self.conn.pipeline()
        pipe.hget(self._buffer(stream, session), str(seq))
        pipe.hdel(self._buffer(stream, session), str(seq))
        raw, _ = pipe.execute()
        return None if raw is None else FrameRecord.from_json(raw)

    def buffer_take_run(
        self, stream: str, session: str, seq: int, most: int, below: int | None = None
    ) -> TakenRun:
        """Up to ``most`` consecutive frames from ``seq`` on, in one round trip; they stay in
        the buffer (the track stage's hold removes the frames it consumed as it ends:
        :meth:`track_end`). Frames older than ``below`` (default ``seq``: consumed, or
        arrived after being given up as lost) are dropped."""
        counts = self.key("stream", self.stream_id(stream, session))
        raw, waiting, end = self._take_run(
            keys=[self._buffer(stream, session), counts],
            args=[seq if below is None else below, seq, most],
        )
        return TakenRun(
            [FrameRecord.from_json(r) for r in raw], int(waiting), None if end is None else int(end)
        )

    def track_work_waiting(self, stream: str, session: str, seq: int) -> bool:
        """Frame ``seq`` or encodings wait for the stream's track stage (one round trip)."""
        pipe = self.conn.pipeline(transaction=False)
        pipe.hexists(self._buffer(stream, session), str(seq))
        pipe.llen(self._encodings(stream, session))
        has, n = pipe.execute()
        return bool(has) or bool(n)

    def buffer_has(self, stream: str, session: str, seq: int) -> bool:
        return bool(self.conn.hexists(self._buffer(stream, session), str(seq)))

    def buffer_len(self, stream: str, session: str) -> int:
        return int(self.conn.hlen(self._buffer(stream, session)))

    def buffer_discard_before(self, stream: str, session: str, seq: int) -> int:
        """Remove frames older than ``seq`` (a detect job retried after the track stage
        gave its frame up as lost); returns how many."""
        stale = [s for s in self.buffer_seqs(stream, session) if s < seq]
        if stale:
            self.conn.hdel(self._buffer(stream, session), *map(str, stale))
        return len(stale)

    def buffer_seqs(self, stream: str, session: str) -> list[int]:
        """Sequence numbers of the frames waiting, in order."""
        return sorted(int(k) for k in self.conn.hkeys(self._buffer(stream, session)))

    # ----- encodings for re-identification: recognize -> track ------------------------
    def _encodings(self, stream: str, session: str) -> str:
        return self.key("encodings", stream, session)

    def send_encodings(self, msg: Encodings, pipeline: Any = None) -> None:
        """Queue ``msg`` for the stream's tracker and poke the track stage (with
        ``pipeline``, when that is executed)."""
        key = self._encodings(msg.stream, msg.session)
        own = pipeline is None
        pipe = self.pipeline() if own else pipeline
        pipe.rpush(key, json.dumps(msg.to_dict(), separators=(",", ":")))
        pipe.expire(key, self.session_ttl_s)
        self.poke_track(msg.stream, msg.session, pipeline=pipe)
        if own:
            pipe.execute()

    def take_encodings(self, stream: str, session: str) -> list[Encodings]:
        """Remove and return every :class:`Encodings` waiting for the stream, in order."""
        key = self._encodings(stream, session)
        pipe = self.conn.pipeline()  # MULTI: nothing pushed in between is lost
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        raw, _ = pipe.execute()
        return [Encodings.from_dict(json.loads(r)) for r in raw]

    def encodings_waiting(self, stream: str, session: str) -> bool:
        return bool(self.conn.llen(self._encodings(stream, session)))

    # ----- the track stage's state and lock ---------------------------------------------
    def load_tracker_state(self, stream: str, session: str) -> dict[str, Any] | None:
        raw = self.conn.get(self.key("tracker", stream, session))
        return None if raw is None else json.loads(raw)

    def save_tracker_state(
        self, stream: str, session: str, state: dict[str, Any], pipeline: Any = None
    ) -> None:
        (self.conn if pipeline is None else pipeline).set(
            self.key("tracker", stream, session),
            json.dumps(state, separators=(",", ":")),
            ex=self.session_ttl_s,
        )

    def tracker_lock(self, stream: str, session: str, timeout_s: float) -> Lock:
        """The stream's tracker lock (expires ``timeout_s`` after it is taken)."""
        return self.conn.lock(self.key("tracker-lock", stream, session), timeout=timeout_s)

    # ----- streams and frame accounting ------------------------------------------
    def register_stream(self, stream: str, session: str, info: dict[str, Any]) -> None:
        sid = self.stream_id(stream, session)
        pipe = self.conn.pipeline()
        pipe.hset(self.key("streams"), sid, json.dumps({**info, "started": time.time()}))
        pipe.hset(self.key("stream", sid), mapping={"captured": 0, "processed": 0, "registered": 1})
        pipe.expire(self.key("stream", sid), self.session_ttl_s)
        pipe.execute()

    def stream_info(self, stream: str, session: str) -> dict[str, Any] | None:
        """What a capture registered of its session (source, live, fps, started)."""
        raw = self.conn.hget(self.key("streams"), self.stream_id(stream, session))
        return None if raw is None else json.loads(raw)

    def stream_exists(self, stream: str, session: str) -> bool:
        """False once Redis lost the stream's counts (restarted without persistence)."""
        key = self.key("stream", self.stream_id(stream, session))
        return bool(self.conn.hexists(key, "registered"))  # counts alone may be re-created

    def streams(self) -> dict[str, dict[str, Any]]:
        raw = self.conn.hgetall(self.key("streams"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def prune_sessions(self) -> SessionPrune:
        """Drop the registry entries of sessions whose counts are gone (they expired
        ``session_ttl_s`` after the session's last write, or Redis lost them).

        Safe to run in several processes at once: an entry goes only after its counts
        key was found gone, and removing it twice is harmless. The counts key is created
        with the entry (one transaction), so a session being registered is never pruned.
        """
        sids = [k.decode() for k in self.conn.hkeys(self.key("streams"))]
        pipe = self.conn.pipeline(transaction=False)
        for sid in sids:
            pipe.exists(self.key("stream", sid))
        gone = [sid for sid, there in zip(sids, pipe.execute(), strict=True) if not there]
        if gone:
            self.conn.hdel(self.key("streams"), *gone)
        live = {sid.split("/", 1)[0] for sid in sids if sid not in gone}
        return SessionPrune(pruned=gone, live_streams=live)

    def count_frame(self, stream: str, session: str, field: str, n: int = 1) -> None:
        """Per-stream counters: ``captured``, ``processed`` or ``dropped:REASON``."""
        key = self.key("stream", self.stream_id(stream, session))
        pipe = self.conn.pipeline()
        pipe.hincrby(key, field, n)
        pipe.expire(key, self.session_ttl_s)
        pipe.execute()

    def account_frames(
        self,
        stream: str,
        session: str,
        fields: dict[int, str],
        also: dict[int, str] | None = None,
    ) -> set[int]:
        """Count each frame ``seq -> field`` (``processed``, ``dropped:REASON``) once, and
        with it the frame's field in ``also`` if it has one (``detected``,
        ``undetected:REASON``).

        Returns the seqs counted now; a seq counted before (a retried sink batch) is
        skipped, so frame counts never exceed what was captured.
        """
        if not fields:
            return set()
        also = also or {}
        keys = [self.key("stream", self.stream_id(stream, session))]
        argv: list[object] = [self.session_ttl_s]
        for seq, field in fields.items():
            chunk = self.key("accounted", stream, session, seq // ACCOUNT_CHUNK)
            if chunk not in keys:
                keys.append(chunk)
            argv += [keys.index(chunk) + 1, seq % ACCOUNT_CHUNK, seq, field, also.get(seq, "")]
        return {int(s) for s in self._account(keys=keys, args=argv)}

    def set_end(self, stream: str, session: str, last_seq: int) -> None:
        """A finite source is done; ``last_seq`` is -1 when no frame was enqueued."""
        key = self.key("stream", self.stream_id(stream, session))
        pipe = self.conn.pipeline()
        pipe.hset(key, "end_seq", last_seq)
        pipe.expire(key, self.session_ttl_s)
        pipe.execute()

    def stream_counts(self, stream: str, session: str) -> dict[str, int]:
        """A stream session's counts: ``captured``, ``processed``, ``dropped:REASON``,
        ``unreadable``, ``end_seq``; of the processed frames, how many were ``detected``
        and how many not (``undetected:REASON``, :func:`detection_rate`)."""
        raw = self.conn.hgetall(self.key("stream", self.stream_id(stream, session)))
        return {k.decode(): int(v) for k, v in raw.items() if k != b"registered"}

    def stream_done(self, stream: str, session: str) -> bool:
        """True once a finite stream's every captured frame is processed or dropped."""
        return counts_done(self.stream_counts(stream, session))

    # ----- the newest stored frame of each stream (the web UI's live view) -------------
    def set_latest(self, rec: FrameRecord, ttl_s: int) -> None:
        """``rec`` is the newest frame of its stream (kept ``ttl_s`` seconds, as its image).

        The frame the record replaces loses its ``latest`` holder (:meth:`hold_frames`):
        the image of the newest frame stays in Redis for the live view, the previous one
        goes when nothing else needs it."""
        data = rec.to_dict()
        for face in data["faces"]:
            face.pop("encoding", None)
        # one script (one round trip): each replaced record is seen by one setter
        self._latest(
            keys=[self.key("latest", rec.stream)],
            args=[json.dumps(data), max(1, ttl_s), rec.key or "", self.frame_holders_key("")],
        )

    def latest(self, stream: str) -> FrameRecord | None:
        """The newest frame the sink stored of ``stream``; None when none is recent."""
        raw = self.conn.get(self.key("latest", stream))
        return None if raw is None else FrameRecord.from_json(raw)

    # ----- cameras added and removed at run time (POST/DELETE /api/streams) -------------
    # The desired set (name -> spec JSON) is written by the API; capture processes follow
    # it (pipeline/stream_control.py), each camera claimed by one of them at a time.
    # Redis usually runs without persistence: the set carries an epoch (a random token
    # written with it and never deleted), so a follower that sees the epoch change knows
    # Redis lost the set and puts back the cameras it knew (``restore_cameras``).
    def add_camera(self, name: str, spec: dict[str, Any]) -> bool:
        """Add camera ``name`` to the desired set; False if it is there already."""
        pipe = self.conn.pipeline(transaction=True)
        pipe.hsetnx(self.key("cameras"), name, json.dumps(spec))
        pipe.set(self.key("cameras-epoch"), secrets.token_hex(8), nx=True)
        return bool(pipe.execute()[0])

    def cameras_epoch(self) -> str:
        """The epoch of the desired set (created when missing): it changes only when Redis
        loses its data."""
        pipe = self.conn.pipeline(transaction=True)
        pipe.set(self.key("cameras-epoch"), secrets.token_hex(8), nx=True)
        pipe.get(self.key("cameras-epoch"))
        return bytes(pipe.execute()[1]).decode()

    def restore_cameras(self, specs: dict[str, dict[str, Any]]) -> list[str]:
        """Put back cameras of a desired set Redis lost (each only where the name is free:
        one added since wins); the names put back."""
        if not specs:
            return []
        pipe = self.conn.pipeline(transaction=True)
        for name, spec in specs.items():
            pipe.hsetnx(self.key("cameras"), name, json.dumps(spec))
        done = pipe.execute()
        return [name for name, ok in zip(specs, done, strict=True) if ok]

    def remove_camera(self, name: str) -> bool:
        """Take camera ``name`` out of the desired set (its capture stops); False if absent."""
        return bool(self.conn.hdel(self.key("cameras"), name))

    def cameras(self) -> dict[str, dict[str, Any]]:
        """The desired set of cameras added at run time: ``{name: spec}``."""
        raw = self.conn.hgetall(self.key("cameras"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def set_camera_status(self, name: str, status: dict[str, Any]) -> None:
        self.conn.hset(self.key("camera-status"), name, json.dumps(status))

    def camera_status(self) -> dict[str, dict[str, Any]]:
        """What the capture processes last said of each added camera: ``{name: status}``."""
        raw = self.conn.hgetall(self.key("camera-status"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def camera_claim(self, name: str, ttl_s: float) -> Lock:
        """The claim of the capture process that runs camera ``name`` (expires ``ttl_s``
        after it was last extended: a dead process's cameras are taken over)."""
        return self.conn.lock(self.key("camera-claim", name), timeout=ttl_s, thread_local=False)

    # ----- faults: dead letters and worker heartbeats ----------------------------
    def dead_key(self, stage: str) -> str:
        return self.key("dead", stage)

    def dead_letter(self, stage: str, entry: bytes, reason: str, max_bytes: int = 65536) -> None:
        """Set a queue entry aside that no worker can read (kept, base64, up to
        ``max_bytes``, with the reason; the newest 1000 per stage)."""
        record = {
            "stage": stage,
            "reason": reason,
            "at": time.time(),
            "size": len(entry),
            "entry": base64.b64encode(entry[:max_bytes]).decode(),
        }
        pipe = self.conn.pipeline()
        pipe.lpush(self.dead_key(stage), json.dumps(record))
        pipe.ltrim(self.dead_key(stage), 0, 999)
        pipe.execute()

    def dead_letters(self, stage: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.conn.lrange(self.dead_key(stage), 0, -1)]

    def beat(self, worker: str, ttl_s: float, pipeline: Any = None) -> None:
        """Worker ``worker`` is alive for the next ``ttl_s`` seconds (sent now, or with
        ``pipeline``)."""
        writer = self.conn if pipeline is None else pipeline
        writer.set(self.key("alive", worker), 1, px=max(1, int(ttl_s * 1000)))

    def alive(self, worker: str) -> bool:
        return bool(self.conn.exists(self.key("alive", worker)))

    def forget(self, worker: str) -> None:
        """A worker that stops cleanly withdraws its heartbeat."""
        self.conn.delete(self.key("alive", worker))
