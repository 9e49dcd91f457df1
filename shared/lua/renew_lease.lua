-- renew_lease.lua: extend the lease of a claimed external job (a report or heartbeat
-- from the worker holding it), atomically with the check that it still holds it.
--
-- KEYS[1]   the lease deadlines, a sorted set (shared.keys.EXTERNAL_LEASES)
-- KEYS[2]   the job's hash (shared.keys.job_key)
-- ARGV[1]   the job id
-- ARGV[2]   the attempt the caller runs ('' when it does not say)
-- ARGV[3]   the new deadline, epoch seconds as text
-- ARGV[4..] the names of the terminal states
--
-- A job of a kind run by RQ (no 'external' field) is left alone (code 2).
-- A job that has ended loses its lease. A job whose stored attempt is not the
-- caller's is left alone (code 0): that attempt was superseded.
--
-- Returns field/value pairs:
--   code -1                    unknown job
--   code 0, state, attempt     superseded (another attempt holds the job)
--   code 1, state, attempt     renewed (or the job ended: its lease is gone)
--   code 2, state              not an external job: nothing to renew
local leases, k = KEYS[1], KEYS[2]
local id, attempt, deadline = ARGV[1], ARGV[2], ARGV[3]
local terminal = {}
for i = 4, #ARGV do terminal[ARGV[i]] = true end
local cur = redis.call('HMGET', k, 'state', 'attempt', 'external')
if not cur[1] then return {'code', -1} end
if cur[3] ~= '1' then return {'code', 2, 'state', cur[1], 'attempt', cur[2] or '1'} end
local stored = cur[2] or '1'
if attempt ~= '' and attempt ~= stored then return {'code', 0, 'state', cur[1], 'attempt', stored} end
if terminal[cur[1]] then
  redis.call('ZREM', leases, id)
else
  redis.call('ZADD', leases, 'XX', deadline, id)
end
return {'code', 1, 'state', cur[1], 'attempt', stored}
