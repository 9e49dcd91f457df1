-- renew_lease.lua: extend the lease of a claimed external job (a report or heartbeat
-- from the worker holding it), atomically with the check that it still holds it.
--
-- KEYS[1]   the lease deadlines, a sorted set (shared.keys.EXTERNAL_LEASES)
-- KEYS[2]   the job's hash (shared.keys.job_key)
-- ARGV[1]   one JSON object, the fields below (shared.claimqueue.ExternalQueues._renew_call):
--   a.id          the job id
--   a.attempt     the attempt the caller runs, as text (absent: it does not say)
--   a.deadline    the new deadline, epoch seconds as text
--   a.terminal    the terminal states, a set {name: true}
--
-- A job of a kind run by RQ (no 'external' field) is left alone (code 2).
-- A job that has ended loses its lease. A job whose stored attempt is not the
-- caller's is left alone (code 0): that attempt was superseded. The lease is
-- kept or dropped by lib/lease.lua, as a report does it (update_job.lua). An attempt
-- whose lease was revoked (a forced cancel: lease_revoked) is not held (code 0).
-- A heartbeat is no report: it leaves reported_at and the stall deadline alone.
-- Every answer but -1 says whether a cancel was requested (cancel 1 or 0); 0 and 1
-- name the worker the job was claimed by (worker, '' when none).
--
-- Returns field/value pairs:
--   code -1                    unknown job
--   code 0, state, attempt     superseded (another attempt holds the job), or revoked
--   code 1, state, attempt     renewed (or the job ended: its lease is gone)
--   code 2, state              not an external job: nothing to renew
local a = cjson.decode(ARGV[1])
local leases, k = KEYS[1], KEYS[2]
--! include lease

local cur = redis.call('HMGET', k, 'state', 'attempt', 'external', 'cancel_requested',
                       'lease_revoked', 'worker')
if not cur[1] then return {'code', -1} end
local cancel = cur[4] and 1 or 0
if cur[3] ~= '1' then
  return {'code', 2, 'state', cur[1], 'attempt', cur[2] or '1', 'cancel', cancel}
end
local stored = cur[2] or '1'
if (a.attempt and a.attempt ~= stored) or cur[5] == (a.attempt or stored) then
  return {'code', 0, 'state', cur[1], 'attempt', stored, 'cancel', cancel,
          'worker', cur[6] or ''}
end
keep_lease(leases, a.id, a.terminal[cur[1]] == true, a.deadline)
return {'code', 1, 'state', cur[1], 'attempt', stored, 'cancel', cancel,
        'worker', cur[6] or ''}
