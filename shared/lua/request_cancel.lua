-- request_cancel.lua: ask a running job to stop, atomically with the check that it runs.
--
-- KEYS[1]   the job's hash (shared.keys.job_key)
-- KEYS[2]   the cancel deadlines, a sorted set (shared.keys.CANCEL_DEADLINES)
-- ARGV[1]   one JSON object, the fields below (shared.store.JobStore.request_cancel):
--   a.id        the job id
--   a.now       now, epoch seconds as text
--   a.grace     seconds the job has to stop (CANCEL_GRACE)
--   a.running   the name of the running state
--
-- Only a running job is asked: it keeps running, with cancel_requested (the time of
-- the request) in its hash, which every answer to its reports and heartbeats passes
-- on (update_job.lua, renew_lease.lua), and a deadline (now + grace) by which the
-- tick process stops it by force if it has not ended (shared/watch.py). Asking
-- again changes nothing (the first deadline holds).
--
-- Returns field/value pairs:
--   code -1            unknown job
--   code 0, state      not running: the caller cancels it at once (or it has ended)
--   code 1             asked now
--   code 2             asked already
local a = cjson.decode(ARGV[1])
local k, deadlines = KEYS[1], KEYS[2]
local cur = redis.call('HMGET', k, 'state', 'cancel_requested')
if not cur[1] then return {'code', -1} end
if cur[1] ~= a.running then return {'code', 0, 'state', cur[1]} end
if cur[2] then return {'code', 2} end
redis.call('HSET', k, 'cancel_requested', a.now, 'updated_at', a.now)
redis.call('ZADD', deadlines, tonumber(a.now) + a.grace, a.id)
return {'code', 1}
