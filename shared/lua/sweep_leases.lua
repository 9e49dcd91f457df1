-- sweep_leases.lua: put the jobs whose lease lapsed back on their queue, atomically.
--
-- KEYS[1]      the lease deadlines, a sorted set (shared.keys.EXTERNAL_LEASES)
-- ARGV[1]      now, epoch seconds as text
-- ARGV[2]      MAX_ATTEMPTS: a job whose lease lapses on this attempt fails
-- ARGV[3]      the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
-- ARGV[4]      the prefix of the queues (shared.keys.EXTERNAL_QUEUE_PREFIX)
-- ARGV[5]      the name of the queued state     ARGV[6]  the name of the failed state
-- ARGV[7]      at most this many jobs per run
-- ARGV[8..]    the names of the terminal states
--
-- A lapsed job that has ended meanwhile (or expired) just loses its lease. Any
-- other goes back to queued with attempt + 1, at the head of its kind's queue,
-- and a message saying why; on its last attempt it fails instead.
--
-- Returns field/value pairs:
--   requeued   ids put back on a queue        gave_up   ids that failed (last attempt)
--   kinds      the kind of each requeued id, in the same order
local leases = KEYS[1]
local now, max_attempts, prefix, qprefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local queued, failed = ARGV[5], ARGV[6]
local terminal = {}
for i = 8, #ARGV do terminal[ARGV[i]] = true end
local requeued, gave_up, kinds = {}, {}, {}
local ids = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
for _, id in ipairs(ids) do
  redis.call('ZREM', leases, id)
  local k = prefix .. id
  local cur = redis.call('HMGET', k, 'state', 'attempt', 'kind', 'worker')
  if cur[1] and not terminal[cur[1]] then
    local attempt = tonumber(cur[2]) or 1
    local who = cur[4] or 'its worker'
    if attempt >= max_attempts then
      redis.call('HSET', k, 'state', failed, 'updated_at', now, 'finished_at', now,
                 'message', who .. ' stopped reporting (lease lapsed) on attempt ' .. attempt
                 .. ' of ' .. max_attempts .. ': given up')
      gave_up[#gave_up + 1] = id
    else
      redis.call('HSET', k, 'state', queued, 'attempt', attempt + 1, 'progress', 0,
                 'stage', '', 'updated_at', now,
                 'message', who .. ' stopped reporting (lease lapsed); queued again for attempt '
                 .. (attempt + 1) .. ' of ' .. max_attempts)
      redis.call('HDEL', k, 'worker', 'current', 'total', 'seq')
      redis.call('LPUSH', qprefix .. (cur[3] or ''), id)
      requeued[#requeued + 1] = id
      kinds[#kinds + 1] = cur[3] or ''
    end
  end
end
return {'requeued', requeued, 'gave_up', gave_up, 'kinds', kinds}
