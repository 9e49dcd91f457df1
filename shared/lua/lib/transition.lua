-- lib/transition.lua: a job moved from one state to another. Included (a line
-- "--! include transition", shared/scripts.py) by every script that changes a
-- job's state: update_job, claim_external, sweep_leases, reset_job, queue_retry,
-- after_wait, after_done.
--
-- transition(a, k, id, from, to, created, batch) -> 1 when this change completed the
-- job's batch (it made the batch's last child final, the first time), else 0.
--   a         the script's JSON argument (the fields below)
--   k, id     the job's hash key and id
--   from, to  the state it left and the state it entered
--   created   the job's created_at (its score in the index; now when missing)
--   batch     the job's batch_id (nil or false for none)
-- Reads these fields of a:
--   a.now           now, epoch seconds as text (the timeline entry, completed_at)
--   a.state_index   the prefix of the state indexes (shared.keys.state_index(''))
--   a.timeline      the suffix of a job's timeline key (shared.keys.job_timeline_key)
--   a.timeline_max  how many entries a timeline keeps (shared.store.TIMELINE_MAX)
--   a.batch_prefix  the prefix of batch hashes (shared.keys.BATCH_PREFIX)
--   a.terminal      the terminal states, a set {name: true}
--   a.running       the name of the running state
--   a.stall_deadlines  when each running job becomes stalled (shared.keys.STALL_DEADLINES)
--   a.stalled_index    the stalled jobs, scored by creation time (shared.keys.STALLED_INDEX)
--   a.history       the history's buckets and names (shared.history.LUA_FIELDS; absent: none)
--
-- The id moves from <state_index><from> to <state_index><to>, scored by its
-- creation time, so the indexes never disagree with the hash; "<to> <now>" is
-- appended to the timeline (k .. a.timeline: trimmed to the newest
-- timeline_max, expiring with the hash). A child of a batch moves one from
-- `from` to `to` in the batch's totals; `done` goes up when it ends (down when
-- a retry takes it back), and the change that makes `done` reach `total`
-- marks the batch completed (HSETNX completed_at), once.
-- Stalls (shared/watch.py): a job that starts running gets a stall deadline (now +
-- its stored stall_after; none without one); one that stops running loses it, and
-- is no longer stalled.
--
-- History (shared/history.py): a change that ends a job (to a terminal state from
-- one that is not) counts once in a.history's fixed buckets, whatever the script:
-- "<outcome>:<kind>" and, for a job that ran, its duration's log-scale bin
-- "d<bin>:<kind>" (from the start its RQ worker recorded, else its first report or
-- claim) go up by one in the hash of its minute and of its quarter hour
-- (each expires after its window); "depth" keeps the bucket's peak of queued jobs
-- (ZCARD of the queued state index); the never-expiring totals (for /metrics) go up,
-- and a failure becomes its kind's last one (its id, time and message).
local function history_peak(key, depth)
  local seen = tonumber(redis.call('HGET', key, 'depth'))
  if not seen or depth > seen then redis.call('HSET', key, 'depth', depth) end
end

local function history_end(a, k, id, to)
  local h = a.history
  local cur = redis.call('HMGET', k, 'kind', 'started_at', 'message')
  local kind = cur[1] or ''
  local t = tonumber(a.now)
  local fields = {h.outcome[to] .. ':' .. kind}
  local started = nil  -- the run's start: its RQ attempt's (worker/attempts.py), else the
  local run = redis.call('LINDEX', k .. h.attempts, -1)  -- first report's or claim's
  if run then
    local ok, entry = pcall(cjson.decode, run)
    if ok and type(entry) == 'table' then started = tonumber(entry.startedAt) end
  end
  if not started then started = tonumber(cur[2]) end
  if started and started < t then  -- not a job stamped started by the change that ends it
    local ms = (t - started) * 1000
    local bin = 0
    if ms > 1 then bin = math.floor(math.log(ms) * h.per_ln) end
    if bin >= h.bins then bin = h.bins - 1 end
    fields[2] = 'd' .. bin .. ':' .. kind
  end
  local depth = redis.call('ZCARD', a.state_index .. h.queued)
  for _, b in ipairs(h.buckets) do
    local key = b.prefix .. string.format('%d', t - t % b.width)
    for _, f in ipairs(fields) do redis.call('HINCRBY', key, f, 1) end
    history_peak(key, depth)
    redis.call('EXPIRE', key, b.ttl)
  end
  redis.call('HINCRBY', h.totals, fields[1], 1)
  if to == h.failed then
    redis.call('HSET', h.last_failure, 'id:' .. kind, id, 'at:' .. kind, a.now,
               'message:' .. kind, cur[3] or '')
  end
end

local function transition(a, k, id, from, to, created, batch)
  local now = a.now
  redis.call('ZREM', a.state_index .. from, id)
  redis.call('ZADD', a.state_index .. to, tonumber(created) or tonumber(now), id)
  if a.history and a.terminal[to] and not a.terminal[from] then history_end(a, k, id, to) end
  local timeline = k .. a.timeline
  redis.call('RPUSH', timeline, to .. ' ' .. now)
  redis.call('LTRIM', timeline, -a.timeline_max, -1)
  local pttl = redis.call('PTTL', k)
  if pttl > 0 then redis.call('PEXPIRE', timeline, pttl) end
  if to == a.running and from ~= a.running then
    local stall = tonumber(redis.call('HGET', k, 'stall_after'))
    if stall then redis.call('ZADD', a.stall_deadlines, tonumber(now) + stall, id) end
  elseif from == a.running and to ~= a.running then
    redis.call('ZREM', a.stall_deadlines, id)
    if redis.call('ZREM', a.stalled_index, id) == 1 then redis.call('HDEL', k, 'stalled') end
  end
  if not batch then return 0 end
  local bk = a.batch_prefix .. batch
  if redis.call('EXISTS', bk) == 0 then return 0 end
  redis.call('HINCRBY', bk, from, -1)
  redis.call('HINCRBY', bk, to, 1)
  local ends, ended = a.terminal[to], a.terminal[from]
  if ends and not ended then
    local done = redis.call('HINCRBY', bk, 'done', 1)
    if done == tonumber(redis.call('HGET', bk, 'total'))
       and redis.call('HSETNX', bk, 'completed_at', now) == 1 then
      return 1
    end
  elseif ended and not ends then
    redis.call('HINCRBY', bk, 'done', -1)  -- a retried child is not done any more
  end
  return 0
end
