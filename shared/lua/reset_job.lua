-- reset_job.lua: put an ended job back to queued (a retry), atomically.
--
-- KEYS[1]   the job's hash (shared.keys.job_key)
-- ARGV[1]   now, epoch seconds as text
-- ARGV[2]   the job's TTL in seconds (renewed)
-- ARGV[3]   the name of the queued state
-- ARGV[4]   the job id
-- ARGV[5]   the index key prefix (shared.keys.INDEX_PREFIX)
-- ARGV[6]   the batch key prefix (shared.keys.batch_key without the id)
-- ARGV[7..] the states a retry may start from
--
-- The seq belongs to the attempt and starts again (a late report of the
-- previous attempt is refused by its attempt number, update_job.lua); the log
-- is kept (the console shows every attempt); the result and "n of total" go.
-- The job moves from <prefix>state:<old> to <prefix>state:<queued>; its
-- timeline (KEYS[1]:timeline) gets "<queued> <now>".
--
-- Returns field/value pairs:
--   code -1                    unknown job
--   code 0, state              not allowed from the job's current state
--   code 1, state, attempt     reset; state is the one it was reset from
local k = KEYS[1]
local now, ttl, queued = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local id, prefix = ARGV[4], ARGV[5]
local cur = redis.call('HMGET', k, 'state', 'attempt', 'created_at', 'batch_id')
if not cur[1] then return {'code', -1} end
local allowed = false
for i = 7, #ARGV do
  if ARGV[i] == cur[1] then allowed = true end
end
if not allowed then return {'code', 0, 'state', cur[1]} end
local attempt = (tonumber(cur[2]) or 1) + 1
redis.call('HSET', k, 'state', queued, 'progress', 0, 'message', '', 'stage', '',
           'updated_at', now, 'attempt', attempt)
redis.call('HDEL', k, 'started_at', 'finished_at', 'seq', 'result', 'current', 'total')
redis.call('EXPIRE', k, ttl)
redis.call('ZREM', prefix .. 'state:' .. cur[1], id)
redis.call('ZADD', prefix .. 'state:' .. queued, cur[3] or now, id)
if cur[4] and redis.call('EXISTS', ARGV[6] .. cur[4]) == 1 then
  local bk = ARGV[6] .. cur[4]  -- a retried child is not done any more
  redis.call('HINCRBY', bk, cur[1], -1)
  redis.call('HINCRBY', bk, queued, 1)
  redis.call('HINCRBY', bk, 'done', -1)
end
redis.call('RPUSH', k .. ':timeline', queued .. ' ' .. now)
redis.call('LTRIM', k .. ':timeline', -100, -1)
redis.call('EXPIRE', k .. ':timeline', ttl)
return {'code', 1, 'state', cur[1], 'attempt', attempt}
