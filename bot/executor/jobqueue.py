"""What the bot and the Celery workers share: the Celery app, Redis key names, the admission script.

Everything in Redis and in Celery messages is JSON or raw image bytes: never pickle, so whoever can
reach Redis cannot make a worker run code. Images travel as Redis keys with a time-to-live, not
inside messages; so do results, keyed by job id, which makes a re-delivered job idempotent.

The bot holds jobs back: a job waits in Redis (its images and its task message, state ``held``)
until a worker slot is free, and only then is its task sent to the broker (state ``queued``), the
one the order ranks first. Capacity is what the live workers' heartbeats say (their concurrency);
one bot process at a time dispatches, under DISPATCH_LOCK. So the order is decided when a slot frees,
whichever bot process or machine holds the lock, and held jobs survive any bot's restart.

Keys (``nst:`` prefix):
    job:<id>:content             the uploaded content image
    job:<id>:styles              a list: the style image(s)
    job:<id>:result              the encoded result image; :result:meta is the done event's header
    job:<id>:preview             the latest preview image (each overwrites the last: bounded)
    job:<id>:events              a Redis stream of the job's events: field "e" holds the JSON header of
                                 base.encode_event; the images of done and preview events are in the
                                 two keys above, not in the stream
    job:<id>:cancel              set to stop the job (before it starts, or within a step)
    job:<id>:attempts            deliveries so far
    job:<id>:task                the task's message (JSON), kept until the job is dispatched
    active                       hash job id -> JSON {user_id, user, guild_id, submitted_at, work,
                                 state (held, queued: sent to the broker, running), started_at,
                                 expires_at}: a job whose expires_at passed without an end is failed
                                 by whoever sweeps next (admission, the bot's refresh), so a slot
                                 can never leak
    pending                      sorted set of job ids not started yet, by submit time
    worker:<name>                heartbeat of a live worker (expires): JSON {name, device, pid,
                                 since, concurrency}
    dispatch                     the dispatcher's lock (SET NX PX): one bot process sends at a time
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

PREFIX = "nst:"
ACTIVE = PREFIX + "active"
PENDING = PREFIX + "pending"
WORKERS = PREFIX + "worker:"
DISPATCH_LOCK = PREFIX + "dispatch"
DISPATCH_LOCK_MS = 5000  # a dispatcher that died holding the lock holds it no longer than this
HELD, SENT, RUNNING = "held", "queued", "running"  # an active entry's states
WORKER_CONCURRENCY = 1  # jobs a worker runs at once (nst-worker: --concurrency=1); an older heartbeat without it: 1
TASK_NAME = "nst.stylize"
QUEUE = "nst"
HEARTBEAT_EVERY = 5.0
HEARTBEAT_TTL = 15
EXPIRY_SLACK = 60.0
POOL_START_TIMEOUT = 300.0  # seconds a pool process may take to load the model


@dataclass(frozen=True)
class JobKeys:
    job_id: str

    def _key(self, part: str) -> str:
        return f"{PREFIX}job:{self.job_id}:{part}"

    @property
    def content(self) -> str:
        return self._key("content")

    @property
    def styles(self) -> str:
        return self._key("styles")

    @property
    def init_image(self) -> str:
        return self._key("init_image")

    @property
    def preview(self) -> str:
        return self._key("preview")

    @property
    def meta(self) -> str:
        return self._key("result:meta")

    @property
    def result(self) -> str:
        return self._key("result")

    @property
    def events(self) -> str:
        return self._key("events")

    @property
    def cancel(self) -> str:
        return self._key("cancel")

    @property
    def attempts(self) -> str:
        return self._key("attempts")

    @property
    def task(self) -> str:
        return self._key("task")

    def all(self) -> list[str]:
        return [self.content, self.styles, self.result, self.meta, self.preview, self.events, self.cancel, self.attempts,
                self.task]


@dataclass(frozen=True)
class QueueSettings:
    """The [executor] settings both sides need."""

    redis_url: str
    key_ttl: int  # seconds images, results and events live in Redis
    visibility_timeout: int  # seconds before an unacknowledged job is handed to another worker
    max_attempts: int
    job_timeout: float
    restore_interval: int = 10  # seconds between sweeps for jobs of dead workers
    preview_interval: float = 0.0  # seconds between previews; 0 = none
    hard_limit_margin: float = 120.0  # Celery kills a job's process this long after job_timeout

    @property
    def hard_time_limit(self) -> float:
        """Celery's hard time limit: only for a step that never returns (the deadline stops the rest)."""
        return self.job_timeout + self.hard_limit_margin

    def running_expiry(self, now: float) -> float:
        """When a running job's entry expires: by then it ended, or a re-delivery has renewed it
        (a dead worker's job is handed on within visibility_timeout + restore_interval)."""
        return now + max(self.visibility_timeout, self.hard_time_limit) + self.restore_interval + EXPIRY_SLACK

    def queued_expiry(self, now: float) -> float:
        """A job that never started is given up when its images expire."""
        return now + self.key_ttl


def redis_url(url: str, password_file: str = "") -> str:
    """The URL with the password from ``password_file`` (a Docker secret), when one is named."""
    if not password_file:
        return url
    password = Path(password_file).expanduser().read_text(encoding="utf-8").strip()
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.unquote(parts.username or "")
    netloc = f"{urllib.parse.quote(user)}:{urllib.parse.quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def safe_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def make_celery(settings: QueueSettings):
    """The Celery app, configured identically in the bot (to send) and in workers (to run)."""
    from celery import Celery

    app = Celery("nst", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle
        result_serializer="json",
        task_ignore_result=True,  # results travel through our own keys
        task_default_queue=QUEUE,
        task_acks_late=True,  # ack after the job ran: a worker that dies mid-job does not lose it
        task_reject_on_worker_lost=True,  # ... and the job goes back to the queue
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,  # one job at a time per worker; the next waits in Redis
        # a pool process loads VGG-19 before it reports up: Celery's default 4 s kills it in a loop on a
        # slow or busy machine
        worker_proc_alive_timeout=POOL_START_TIMEOUT,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # a delivered, unacknowledged job is handed to another worker after this long:
            # it must exceed the longest job, or a slow job would run twice
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
        },
    )
    return app


# Expired entries are failed first, so a leaked slot never blocks anyone; then the user's and the
# total count are compared with the limits and, if there is room, the job is inserted: all in one
# script, which Redis runs atomically (two commands at once cannot both pass the check).
_SWEEP = """
local function sweep(now)
  local entries = redis.call('HGETALL', KEYS[1])
  for i = 1, #entries, 2 do
    local id, entry = entries[i], cjson.decode(entries[i + 1])
    local expires = tonumber(entry['expires_at'] or 0)
    if expires > 0 and expires < now then
      redis.call('HDEL', KEYS[1], id)
      redis.call('ZREM', KEYS[2], id)
      local prefix = ARGV[1] .. 'job:' .. id .. ':'
      redis.call('DEL', prefix .. 'content', prefix .. 'styles')
      redis.call('SET', prefix .. 'cancel', '1', 'EX', tonumber(ARGV[3]))
      redis.call('XADD', prefix .. 'events', '*', 'e', ARGV[2])
      redis.call('EXPIRE', prefix .. 'events', tonumber(ARGV[3]))
    end
  end
end
"""

# KEYS: active, pending. ARGV: prefix, expired event header, key ttl, now.
SWEEP_SCRIPT = _SWEEP + """
sweep(tonumber(ARGV[4]))
return 1
"""

# KEYS: active, pending. ARGV: prefix, expired event header, key ttl, now, job id, user (text),
# max per user, max queue, entry JSON, submitted_at. Returns {admitted (0/1), mine, total}.
ADMIT_SCRIPT = _SWEEP + """
sweep(tonumber(ARGV[4]))
local values = redis.call('HVALS', KEYS[1])
local mine = 0
for _, raw in ipairs(values) do
  if tostring(cjson.decode(raw)['user']) == ARGV[6] then mine = mine + 1 end
end
if mine >= tonumber(ARGV[7]) or #values >= tonumber(ARGV[8]) then
  return {0, mine, #values}
end
redis.call('HSET', KEYS[1], ARGV[5], ARGV[9])
redis.call('ZADD', KEYS[2], ARGV[10], ARGV[5])
return {1, mine, #values}
"""

# KEYS: active. ARGV: job id, its entry as read, the entry to write. Writes only if nobody changed the
# entry since it was read (1), else 0: a held job is sent once, and never after a cancel removed it.
# The entries are compared and written as text: Lua's cjson would round the ids (beyond 2^53).
SWAP_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS: the lock. ARGV: the holder's token. Deletes the lock only if it is still this holder's.
UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

EXPIRED_REASON = (
    "your job was lost: no worker finished it or reported on it in time (a worker may have been killed); "
    "please send it again"
)
