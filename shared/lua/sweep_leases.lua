-- sweep_leases.lua: put the jobs whose lease lapsed back on their queue, atomically.
--
-- KEYS[1]      the lease deadlines, a sorted set (shared.keys.EXTERNAL_LEASES)
-- ARGV[1]      now, epoch seconds as text
-- ARGV[2]      MAX_ATTEMPTS: a job whose lease lapses on this attempt fails
-- ARGV[3]      the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
-- ARGV[4]      the prefix of the queues (shared.keys.EXTERNAL_QUEUE_PREFIX)
-- ARGV[5]      the name of the queued state     ARGV[6]  the name of the failed state
-- ARGV[7]      at most this many jobs per run
-- ARGV[8]      the index key prefix (shared.keys.INDEX_PREFIX)
-- ARGV[9]      the batch key prefix (shared.keys.BATCH_PREFIX)
-- ARGV[10..]   the names of the terminal states
--
-- A lapsed job that has ended meanwhile (or expired) just loses its lease. Any
-- other goes back to queued with attempt + 1, at the head of its kind's queue,
-- and a message saying why; on its last attempt it fails instead. Either way it
-- moves between the state indexes, its timeline notes the new state, and its
-- batch's totals move with it, as for a reported change (update_job.lua): the
-- failure that ends a batch's last child marks the batch completed, once, and
-- says so (batch_done).
--
-- Returns field/value pairs:
--   requeued   ids put back on a queue        gave_up   ids that failed (last attempt)
--   kinds      the kind of each requeued id, in the same order
--   batch_done ids whose failure completed their batch (start its onComplete)
local leases = KEYS[1]
local now, max_attempts, prefix, qprefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local queued, failed = ARGV[5], ARGV[6]
local terminal = {}
local iprefix, bprefix = ARGV[8], ARGV[9]
for i = 10, #ARGV do terminal[ARGV[i]] = true end
local batch_done = {}

-- The job left state `from` for `to` at `now`: its indexes, timeline and batch totals.
local function moved(k, id, from, to, created, batch)
  redis.call('ZREM', iprefix .. 'state:' .. from, id)
  redis.call('ZADD', iprefix .. 'state:' .. to, tonumber(created) or tonumber(now), id)
  local timeline = k .. ':timeline'
  redis.call('RPUSH', timeline, to .. ' ' .. now)
  redis.call('LTRIM', timeline, -100, -1)
  local ttl = redis.call('PTTL', k)
  if ttl > 0 then redis.call('PEXPIRE', timeline, ttl) end
  if not batch or redis.call('EXISTS', bprefix .. batch) == 0 then return end
  local bk = bprefix .. batch
  redis.call('HINCRBY', bk, from, -1)
  redis.call('HINCRBY', bk, to, 1)
  if terminal[to] and not terminal[from] then
    local done = redis.call('HINCRBY', bk, 'done', 1)
    if done == tonumber(redis.call('HGET', bk, 'total'))
       and redis.call('HSETNX', bk, 'completed_at', now) == 1 then
      batch_done[#batch_done + 1] = id
    end
  end
end

local requeued, gave_up, kinds = {}, {}, {}
local ids = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
for _, id in ipairs(ids) do
  redis.call('ZREM', leases, id)
  local k = prefix .. id
  local cur = redis.call('HMGET', k, 'state', 'attempt', 'kind', 'worker', 'created_at',
                         'batch_id')
  if cur[1] and not terminal[cur[1]] then
    local attempt = tonumber(cur[2]) or 1
    local who = cur[4] or 'its worker'
    if attempt >= max_attempts then
      redis.call('HSET', k, 'state', failed, 'updated_at', now, 'finished_at', now,
                 'message', who .. ' stopped reporting (lease lapsed) on attempt ' .. attempt
                 .. ' of ' .. max_attempts .. ': given up')
      moved(k, id, cur[1], failed, cur[5], cur[6])
      gave_up[#gave_up + 1] = id
    else
      redis.call('HSET', k, 'state', queued, 'attempt', attempt + 1, 'progress', 0,
                 'stage', '', 'updated_at', now,
                 'message', who .. ' stopped reporting (lease lapsed); queued again for attempt '
                 .. (attempt + 1) .. ' of ' .. max_attempts)
      redis.call('HDEL', k, 'worker', 'current', 'total', 'seq')
      redis.call('LPUSH', qprefix .. (cur[3] or ''), id)
      moved(k, id, cur[1], queued, cur[5], cur[6])
      requeued[#requeued + 1] = id
      kinds[#kinds + 1] = cur[3] or ''
    end
  end
end
return {'requeued', requeued, 'gave_up', gave_up, 'kinds', kinds, 'batch_done', batch_done}
