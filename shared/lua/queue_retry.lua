-- queue_retry.lua: a job scheduled for its next attempt (lib/retry.lua) is due: it
-- becomes queued, atomically, unless it changed meanwhile (cancelled, or another attempt).
--
-- KEYS[1]   the job's hash (shared.keys.job_key)
-- ARGV[1]   one JSON object, the fields below (shared.store.JobStore.queue_retry):
--   a.id            the job id
--   a.attempt       the attempt that is due (the hash's attempt must be this one)
--   a.now           now, epoch seconds as text
--   a.scheduled     the name of the scheduled state
--   a.queued        the name of the queued state
--   a.terminal      the terminal states, a set {name: true}
--   a.state_index   the prefix of the state indexes (for lib/transition.lua)
--   a.timeline      the suffix of a job's timeline key (for lib/transition.lua)
--   a.timeline_max  how many entries a timeline keeps (for lib/transition.lua)
--   a.batch_prefix  the prefix of batch hashes (for lib/transition.lua)
--   a.running       the name of the running state (for lib/transition.lua)
--   a.stall_deadlines  the stall deadlines (for lib/transition.lua)
--   a.stalled_index    the stalled jobs' index (for lib/transition.lua)
--   a.history       the history's buckets, a job's end counts in them (for lib/transition.lua)
--
-- Only a job that is scheduled, on attempt a.attempt, with a retry_at (a retry, not a
-- job started with a time) moves: to queued, with the message saying which attempt
-- waits, retry_at gone; a transition (lib/transition.lua) as any change of state.
--
-- Returns field/value pairs:
--   code -1           unknown job
--   code 0, state     not due: state is the job's current state
--   code 1            queued
local a = cjson.decode(ARGV[1])
local k = KEYS[1]
--! include transition

local cur = redis.call('HMGET', k, 'state', 'attempt', 'retry_at', 'max_attempts',
                       'created_at', 'batch_id')
if not cur[1] then return {'code', -1} end
if cur[1] ~= a.scheduled or tonumber(cur[2]) ~= a.attempt or not cur[3] then
  return {'code', 0, 'state', cur[1]}
end
redis.call('HSET', k, 'state', a.queued, 'updated_at', a.now,
           'message', 'attempt ' .. a.attempt .. ' of ' .. (cur[4] or '?')
           .. ': waiting for a worker')
redis.call('HDEL', k, 'retry_at')
transition(a, k, a.id, cur[1], a.queued, cur[5], cur[6])
return {'code', 1}
