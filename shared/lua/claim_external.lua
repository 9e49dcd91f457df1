-- claim_external.lua: give the oldest waiting job of the named external kinds to one
-- worker, with a lease, atomically (a job is never given to two workers).
--
-- KEYS[1]      the lease deadlines, a sorted set (shared.keys.EXTERNAL_LEASES)
-- KEYS[2..]    the queues to take from, in order (shared.keys.external_queue_key)
-- ARGV[1]      now, epoch seconds as text
-- ARGV[2]      the lease, in seconds
-- ARGV[3]      the worker's name (kept on the job, shown in its message)
-- ARGV[4]      the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
-- ARGV[5]      the name of the queued state
-- ARGV[6]      the name of the running state
-- ARGV[7]      '1': first look whether a lease lapsed (the earliest deadline has
--              passed) and, if so, take nothing and say so (code 2); '' : do not look
-- ARGV[8]      the index key prefix (shared.keys.INDEX_PREFIX)
-- ARGV[9]      the batch key prefix (shared.keys.BATCH_PREFIX)
--
-- The lapse check reads only the head of the deadlines (ZRANGE 0 0), so a claim
-- sweeps (shared/lua/sweep_leases.lua, then claims again) only when there is
-- something to sweep. An id whose job is gone (expired) or no longer queued
-- (cancelled while it waited) is dropped from the queue and the next one is
-- tried. The claimed job becomes running, names its worker, forgets the seq of
-- an earlier attempt (that attempt's reports are refused by their token), and
-- gets a lease; like a reported change of state (update_job.lua) it moves from
-- the queued to the running state index, notes "<running> <now>" on its
-- timeline and moves one from queued to running in its batch's totals. The answer carries the job's whole hash, so the caller pushes the
-- new state without reading it again.
--
-- Returns field/value pairs:
--   code 0                                         nothing to claim
--   code 1, jobId, kind, args, attempt, job        claimed; job is the hash, as
--                                                  HGETALL returns it (field, value, ...)
--   code 2                                         a lease lapsed: sweep, then claim again
local leases = KEYS[1]
local now, lease, worker, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local queued, running, iprefix, bprefix = ARGV[5], ARGV[6], ARGV[8], ARGV[9]
if ARGV[7] == '1' then
  local head = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
  if head[2] and tonumber(head[2]) <= now then return {'code', 2} end
end
for q = 2, #KEYS do
  while true do
    local id = redis.call('LPOP', KEYS[q])
    if not id then break end
    local k = prefix .. id
    local cur = redis.call('HMGET', k, 'state', 'attempt', 'kind', 'args', 'started_at',
                           'created_at', 'batch_id')
    if cur[1] == queued then
      local attempt = tonumber(cur[2]) or 1
      local fields = {'state', running, 'worker', worker, 'attempt', attempt,
                      'message', 'claimed by ' .. worker .. ' (attempt ' .. attempt .. ')',
                      'updated_at', ARGV[1]}
      if not cur[5] then
        table.insert(fields, 'started_at'); table.insert(fields, ARGV[1])
      end
      redis.call('HSET', k, unpack(fields))
      redis.call('HDEL', k, 'seq')
      redis.call('ZADD', leases, now + lease, id)
      redis.call('ZREM', iprefix .. 'state:' .. queued, id)
      redis.call('ZADD', iprefix .. 'state:' .. running, tonumber(cur[6]) or now, id)
      local timeline = k .. ':timeline'
      redis.call('RPUSH', timeline, running .. ' ' .. ARGV[1])
      redis.call('LTRIM', timeline, -100, -1)
      local ttl = redis.call('PTTL', k)
      if ttl > 0 then redis.call('PEXPIRE', timeline, ttl) end
      if cur[7] and redis.call('EXISTS', bprefix .. cur[7]) == 1 then
        redis.call('HINCRBY', bprefix .. cur[7], queued, -1)
        redis.call('HINCRBY', bprefix .. cur[7], running, 1)
      end
      return {'code', 1, 'jobId', id, 'kind', cur[3] or '', 'args', cur[4] or '{}',
              'attempt', attempt, 'job', redis.call('HGETALL', k)}
    end
  end
end
return {'code', 0}
