-- reset_job.lua: put an ended job back to queued (a retry), atomically.
--
-- KEYS[1]   the job's hash (shared.keys.job_key)
-- ARGV[1]   one JSON object, the fields below (shared.store.JobStore.reset):
--   a.id            the job id
--   a.now           now, epoch seconds as text
--   a.ttl           the job's TTL in seconds (renewed)
--   a.queued        the name of the queued state
--   a.from_states   the states a retry may start from, a set {name: true}
--   a.terminal      the terminal states, a set {name: true}
--   a.state_index   the prefix of the state indexes (for lib/transition.lua)
--   a.timeline      the suffix of a job's timeline key (for lib/transition.lua)
--   a.timeline_max  how many entries a timeline keeps (for lib/transition.lua)
--   a.batch_prefix  the prefix of batch hashes (for lib/transition.lua)
--   a.running       the name of the running state (for lib/transition.lua)
--   a.stall_deadlines  the stall deadlines (for lib/transition.lua)
--   a.stalled_index the stalled jobs' index (for lib/transition.lua)
--   a.history       the history's buckets, a job's end counts in them (for lib/transition.lua)
--
-- The seq belongs to the attempt and starts again (a late report of the
-- previous attempt is refused by its attempt number, update_job.lua); the log
-- is kept (the console shows every attempt); the result and "n of total" go, and so
-- do a requested cancel, a revoked lease and the last report's time (shared/watch.py).
-- The move to queued is a transition (lib/transition.lua): the state indexes,
-- "<queued> <now>" on the timeline, and a batch's child is not done any more.
--
-- Returns field/value pairs:
--   code -1                    unknown job
--   code 0, state              not allowed from the job's current state
--   code 1, state, attempt     reset; state is the one it was reset from
local a = cjson.decode(ARGV[1])
local k = KEYS[1]
--! include transition

local cur = redis.call('HMGET', k, 'state', 'attempt', 'created_at', 'batch_id')
if not cur[1] then return {'code', -1} end
if not a.from_states[cur[1]] then return {'code', 0, 'state', cur[1]} end
local attempt = (tonumber(cur[2]) or 1) + 1
redis.call('HSET', k, 'state', a.queued, 'progress', 0, 'message', '', 'stage', '',
           'updated_at', a.now, 'attempt', attempt)
redis.call('HDEL', k, 'started_at', 'finished_at', 'seq', 'seq_any', 'result', 'current',
           'total', 'cancel_requested', 'lease_revoked', 'reported_at', 'stalled')
redis.call('EXPIRE', k, a.ttl)
transition(a, k, a.id, cur[1], a.queued, cur[3], cur[4])
return {'code', 1, 'state', cur[1], 'attempt', attempt}
