-- sweep_leases.lua: put the jobs whose lease lapsed back on their queue, atomically.
--
-- KEYS[1]      the lease deadlines, a sorted set (shared.keys.EXTERNAL_LEASES)
-- ARGV[1]      one JSON object, the fields below (shared.claimqueue.ExternalQueues.sweep):
--   a.now           now, epoch seconds as text
--   a.max_attempts  MAX_ATTEMPTS: a job whose lease lapses on this attempt fails
--   a.job_prefix    the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.queue_prefix  the prefix of the queues (shared.keys.EXTERNAL_QUEUE_PREFIX)
--   a.queued        the name of the queued state
--   a.failed        the name of the failed state
--   a.limit         at most this many jobs per run
--   a.terminal      the terminal states, a set {name: true}
--   a.state_index   the prefix of the state indexes (for lib/transition.lua)
--   a.timeline      the suffix of a job's timeline key (for lib/transition.lua)
--   a.timeline_max  how many entries a timeline keeps (for lib/transition.lua)
--   a.batch_prefix  the prefix of batch hashes (for lib/transition.lua)
--   a.jitter        a random number from 0 to 1 (exponential backoffs' jitter)
--   a.scheduled     the name of the scheduled state (for lib/retry.lua)
--   a.exponential   the doubling backoff's name (for lib/retry.lua)
--   a.backoff_cap   the longest exponential wait (for lib/retry.lua)
--   a.failures_max  earlier attempts' errors kept (for lib/retry.lua)
--   a.running       the name of the running state (for lib/transition.lua)
--   a.stall_deadlines  the stall deadlines (for lib/transition.lua)
--   a.stalled_index the stalled jobs' index (for lib/transition.lua)
--   a.history       the history's buckets, a job's end counts in them (for lib/transition.lua)
--
-- A lapsed job that has ended meanwhile (or expired) just loses its lease. Any
-- other goes back to queued with attempt + 1, at the head of its kind's queue (of
-- its priority: "<queue_prefix><kind>", with ":high" or ":low" after it),
-- and a message saying why; on its last attempt it fails instead. Either way it
-- is a transition, as for a reported change (lib/transition.lua: the state
-- indexes, its timeline, its batch's totals): the failure that ends a batch's
-- last child marks the batch completed, once, and says so (batch_done).
-- A job whose kind retries (its hash names max_attempts) is not queued again at
-- once: the lapse is a failed attempt, retried as its kind says (lib/retry.lua:
-- scheduled for the next attempt after its backoff), or failed on its last one;
-- MAX_ATTEMPTS is then not what counts.
--
-- Returns field/value pairs:
--   requeued   ids put back on a queue        gave_up   ids that failed (last attempt)
--   retried    ids scheduled for their next attempt (their kind retries)
--   kinds      the kind of each requeued id, in the same order
--   batch_done ids whose failure completed their batch (start its onComplete)
local a = cjson.decode(ARGV[1])
local leases = KEYS[1]
--! include transition
--! include retry

local now, max_attempts = a.now, a.max_attempts
local requeued, gave_up, kinds, batch_done, retried = {}, {}, {}, {}, {}
local ids = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, a.limit)
for i, id in ipairs(ids) do
  redis.call('ZREM', leases, id)
  local k = a.job_prefix .. id
  local cur = redis.call('HMGET', k, 'state', 'attempt', 'kind', 'worker', 'created_at',
                         'batch_id', 'max_attempts', 'priority')
  if cur[1] and not a.terminal[cur[1]] then
    local attempt = tonumber(cur[2]) or 1
    local who = cur[4] or 'its worker'
    local to
    local most = tonumber(cur[7]) or max_attempts  -- its kind's retries, else MAX_ATTEMPTS
    -- spread the jitter of the jobs of one sweep (golden-ratio steps from a.jitter)
    local delay = cur[7] and retry_delay(a, k, attempt, (a.jitter + i * 0.6180339887) % 1)
    if delay then
      to = a.scheduled
      retry_later(a, k, attempt, delay, who .. ' stopped reporting (lease lapsed)')
      retried[#retried + 1] = id
    elseif attempt >= most or cur[7] then
      to = a.failed
      redis.call('HSET', k, 'state', to, 'updated_at', now, 'finished_at', now,
                 'message', who .. ' stopped reporting (lease lapsed) on attempt ' .. attempt
                 .. ' of ' .. most .. ': given up')
      gave_up[#gave_up + 1] = id
    else
      to = a.queued
      redis.call('HSET', k, 'state', to, 'attempt', attempt + 1, 'progress', 0,
                 'stage', '', 'updated_at', now,
                 'message', who .. ' stopped reporting (lease lapsed); queued again for attempt '
                 .. (attempt + 1) .. ' of ' .. max_attempts)
      redis.call('HDEL', k, 'worker', 'current', 'total', 'seq', 'seq_any')
      local queue = a.queue_prefix .. (cur[3] or '')
      if cur[7] == 'high' or cur[7] == 'low' then queue = queue .. ':' .. cur[7] end
      redis.call('LPUSH', queue, id)
      requeued[#requeued + 1] = id
      kinds[#kinds + 1] = cur[3] or ''
    end
    if transition(a, k, id, cur[1], to, cur[5], cur[6]) == 1 then
      batch_done[#batch_done + 1] = id
    end
  end
end
return {'requeued', requeued, 'gave_up', gave_up, 'kinds', kinds, 'batch_done', batch_done,
        'retried', retried}
