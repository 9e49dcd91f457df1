-- claim_external.lua: give the oldest waiting job of the named external kinds to one
-- worker, with a lease, atomically (a job is never given to two workers).
--
-- KEYS[1]      the lease deadlines, a sorted set (shared.keys.EXTERNAL_LEASES)
-- KEYS[2..]    the queues to take from, in order (shared.keys.external_queue_key)
-- ARGV[1]      one JSON object, the fields below (shared.claimqueue.ExternalQueues.claim):
--   a.now           now, epoch seconds as text
--   a.lease         the lease, in seconds
--   a.worker        the worker's name (kept on the job, shown in its message)
--   a.job_prefix    the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.queued        the name of the queued state
--   a.running       the name of the running state
--   a.check_leases  true: first look whether a lease lapsed (the earliest deadline
--                   has passed) and, if so, take nothing and say so (code 2)
--   a.terminal      the terminal states, a set {name: true}
--   a.state_index   the prefix of the state indexes (for lib/transition.lua)
--   a.timeline      the suffix of a job's timeline key (for lib/transition.lua)
--   a.timeline_max  how many entries a timeline keeps (for lib/transition.lua)
--   a.batch_prefix  the prefix of batch hashes (for lib/transition.lua)
--   a.stall_deadlines  the stall deadlines (for lib/transition.lua)
--   a.stalled_index the stalled jobs' index (for lib/transition.lua)
--   a.history       the history's buckets, a job's end counts in them (for lib/transition.lua)
--
-- The lapse check reads only the head of the deadlines (ZRANGE 0 0), so a claim
-- sweeps (shared/lua/sweep_leases.lua, then claims again) only when there is
-- something to sweep. An id whose job is gone (expired) or no longer queued
-- (cancelled while it waited) is dropped from the queue and the next one is
-- tried. The claimed job becomes running, names its worker, forgets the seq of
-- an earlier attempt (that attempt's reports are refused by their token), and
-- gets a lease; like a reported change of state it is a transition
-- (lib/transition.lua: queued to running in the state indexes, "<running> <now>"
-- on its timeline, one from queued to running in its batch's totals). The
-- answer carries the job's whole hash, so the caller pushes the new state
-- without reading it again.
--
-- Returns field/value pairs:
--   code 0                                         nothing to claim
--   code 1, jobId, kind, args, attempt, job        claimed; job is the hash, as
--                                                  HGETALL returns it (field, value, ...)
--   code 2                                         a lease lapsed: sweep, then claim again
local a = cjson.decode(ARGV[1])
local leases = KEYS[1]
--! include transition

local now = tonumber(a.now)
if a.check_leases then
  local head = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
  if head[2] and tonumber(head[2]) <= now then return {'code', 2} end
end
for q = 2, #KEYS do
  while true do
    local id = redis.call('LPOP', KEYS[q])
    if not id then break end
    local k = a.job_prefix .. id
    local cur = redis.call('HMGET', k, 'state', 'attempt', 'kind', 'args', 'started_at',
                           'created_at', 'batch_id')
    if cur[1] == a.queued then
      local attempt = tonumber(cur[2]) or 1
      local fields = {'state', a.running, 'worker', a.worker, 'attempt', attempt,
                      'message', 'claimed by ' .. a.worker .. ' (attempt ' .. attempt .. ')',
                      'updated_at', a.now}
      if not cur[5] then
        fields[#fields + 1] = 'started_at'; fields[#fields + 1] = a.now
      end
      redis.call('HSET', k, unpack(fields))
      redis.call('HDEL', k, 'seq', 'seq_any')
      redis.call('ZADD', leases, now + a.lease, id)
      transition(a, k, id, a.queued, a.running, cur[6], cur[7])
      return {'code', 1, 'jobId', id, 'kind', cur[3] or '', 'args', cur[4] or '{}',
              'attempt', attempt, 'job', redis.call('HGETALL', k)}
    end
  end
end
return {'code', 0}
