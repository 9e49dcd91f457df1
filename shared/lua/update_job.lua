-- update_job.lua: apply one progress report to a job, atomically, with its log lines.
--
-- KEYS[1]   the job's hash (shared.keys.job_key)
-- KEYS[2]   the job's log, a stream (shared.keys.job_log_key)
-- KEYS[3]   the lease deadlines of external jobs, a sorted set (shared.keys.EXTERNAL_LEASES)
-- ARGV[1]   one JSON object, the fields below (shared.store.JobStore._update_call):
--   a.id            the job id
--   a.state         the reported state
--   a.progress      progress, 0..100 (a number)
--   a.message       the message
--   a.stage         the stage
--   a.seq           the report's seq, as text (absent: none)
--   a.now           now, epoch seconds as text
--   a.current       "current of total", as text (absent, with a.total: none)
--   a.total         the total, as text
--   a.result        the result as JSON text (absent: none)
--   a.lines         the new log lines, in order (absent: none)
--   a.log_max       how many log lines the stream keeps (JOB_LOG_MAX)
--   a.log_start     the log id before the first line (shared.protocol.LOG_START)
--   a.attempt       the attempt the report is for (absent or 0: any attempt; -1: any
--                   attempt of a job of an external kind, the WORKER_TOKEN's reports)
--   a.lease_until   the lease deadline an accepted report gives a claimed external
--                   job, epoch seconds as text (absent: none)
--   a.succeeded     the name of the succeeded state
--   a.terminal      the terminal states, a set {name: true}
--   a.ttl           the job TTL in seconds (older entries leave the new state's index)
--   a.state_index   the prefix of the state indexes (the TTL trim; lib/transition.lua)
--   a.timeline      the suffix of a job's timeline key (for lib/transition.lua)
--   a.timeline_max  how many entries a timeline keeps (for lib/transition.lua)
--   a.batch_prefix  the prefix of batch hashes (for lib/transition.lua)
--   a.quota_prefix  the prefix of the quota counters (for lib/quota.lua)
--   a.quota_bucket  the width of a quota bucket, seconds (for lib/quota.lua)
--   a.quota_exempt  the tenants never counted, a set {name: true} (for lib/quota.lua)
--   a.failed        the name of the failed state
--   a.no_retry      true: a failed report ends the job even if its kind retries
--   a.jitter        a random number from 0 to 1 (an exponential backoff's jitter)
--   a.scheduled     the name of the scheduled state (for lib/retry.lua)
--   a.exponential   the doubling backoff's name (for lib/retry.lua)
--   a.backoff_cap   the longest exponential wait (for lib/retry.lua)
--   a.failures_max  earlier attempts' errors kept (for lib/retry.lua)
--   a.running       the name of the running state (lib/transition.lua, and below)
--   a.stall_deadlines  when each running job becomes stalled (shared.keys.STALL_DEADLINES)
--   a.stalled_index the stalled jobs, scored by creation time (shared.keys.STALLED_INDEX)
--   a.history       the history's buckets, a job's end counts in them (for lib/transition.lua)
--   a.cancelled     the name of the cancelled state
--   a.ack_message   the message of a job that ends cancelled, with none of its own,
--                   after a cancel was requested ("cancelled on request; ...")
--
-- Rules: an unknown job is refused (and, for a.attempt -1, a job of a kind RQ runs,
-- as if unknown); a report for another attempt (the job was retried since) is
-- refused; a terminal job never changes; a seq not above the stored one is
-- dropped (the attempt's reports, a.attempt above 0, keep theirs in 'seq'; the
-- shared tokens' reports, tied to no attempt, theirs in 'seq_any': one cannot
-- silence the other); progress never goes back; a report that changes
-- nothing (no new field value, no log line) is dropped. Log lines are appended
-- only when the update is applied. A change of state is a transition
-- (lib/transition.lua: the state indexes, the timeline, the batch's totals) in
-- the same run, so the indexes never disagree with the hash; the new state's
-- index also loses the entries older than the TTL (of expired jobs). A report
-- that is not refused (applied or dropped) renews the lease of a claimed
-- external job (lib/lease.lua, renew_lease.lua's rule, without a second script
-- run): the deadline moves to a.lease_until, or the lease is gone once the job
-- has ended.
-- A plain report (no log line, no change of state) runs HMGET once and HSET once.
-- The bytes an applied report stores count against the job's owners (its
-- `tenant` and `tenant_address` fields, lib/quota.lua), in the bucket of the
-- job's expiry: a result by how much it grows, and the new log lines that
-- lengthen the log (while it holds fewer than a.log_max; past that a line
-- replaces one, and the log's size stays about the same).
-- A failed report of an attempt that is not the job's last (its kind retries, the
-- hash's max_attempts; a.no_retry unset) does not end it: the job becomes scheduled
-- for its next attempt (lib/retry.lua), loses its lease, and the answer's state is
-- scheduled, with retry_at, attempt, max_attempts and failures.
-- A plain report (no log line, no change of state) runs HMGET once and HSET once (and,
-- running, one ZADD: its stall deadline).
-- Cancel and stalls (shared/watch.py): every answer says whether a cancel was requested
-- (cancel_requested, the time it was); a report for an attempt whose lease was revoked
-- (lease_revoked, a forced cancel) is refused like a superseded one (code -3). An applied
-- report is a sign of life: it stamps reported_at, moves a running job's stall deadline
-- to now + its stall_after, and a stalled job is stalled no more. (A heartbeat renews
-- the lease only: renew_lease.lua.)
--
-- Returns field/value pairs (shared.scripts.pairs turns them into a dict):
--   code -1                 unknown job
--   code -2, state, attempt stale attempt; attempt is the job's current one
--   code -3, state, attempt that attempt's lease was revoked (a forced cancel)
--   code 0, state, cancel_requested   dropped; state is the job's current state
--   code 1, state, progress, message, stage, kind, current, total,
--           result, log_after, log_ids, created_at, owner, batch_id, batch_done
--                           applied; log_after is the id of the line before the
--                           new ones (a.log_start for none), log_ids the new
--                           lines' ids; batch_done 1 when this change completed
--                           the job's batch (once); a retried attempt adds
--                           retry_at, attempt, max_attempts, failures;
--                           cancel_requested as above
local a = cjson.decode(ARGV[1])
local k, logk, leases = KEYS[1], KEYS[2], KEYS[3]
--! include transition
--! include lease
--! include quota
--! include retry

local for_attempt = a.attempt or 0
local seq_field = for_attempt > 0 and 'seq' or 'seq_any'
local cur = redis.call('HMGET', k, 'state', 'progress', seq_field, 'message', 'stage', 'kind',
                       'current', 'total', 'log_last', 'created_at',
                       'owner', 'started_at', 'batch_id', 'attempt', 'external',
                       'tenant', 'tenant_address',
                       'cancel_requested', 'stall_after', 'stalled', 'lease_revoked')
local cur_state, cur_seq = cur[1], cur[3]
if not cur_state then return {'code', -1} end
if for_attempt < 0 and cur[15] ~= '1' then return {'code', -1} end
local cur_attempt = tonumber(cur[14]) or 1
if for_attempt > 0 and for_attempt ~= cur_attempt then
  return {'code', -2, 'state', cur_state, 'attempt', cur_attempt}
end
if for_attempt > 0 and tonumber(cur[21]) == for_attempt then
  return {'code', -3, 'state', cur_state, 'attempt', cur_attempt}
end
local cancel_requested = cur[18] or ''

-- A report that is not refused renews the lease of a claimed external job.
local function renew(ended)
  if a.lease_until and cur[15] == '1' then keep_lease(leases, a.id, ended, a.lease_until) end
end

local function dropped(ended)
  renew(ended)
  return {'code', 0, 'state', cur_state, 'cancel_requested', cancel_requested}
end

if a.terminal[cur_state] then return dropped(true) end
local seq = a.seq
if seq and cur_seq and cur_seq ~= '' and tonumber(seq) <= tonumber(cur_seq) then
  return dropped(false)
end
local state, now, message, stage = a.state, a.now, a.message, a.stage
if state == a.cancelled and message == '' and cancel_requested ~= '' then
  message = a.ack_message
end
local old = tonumber(cur[2]) or 0
local progress = a.progress
if progress < old then progress = old end
if state == a.succeeded then progress = 100 end
local current, total = a.current, a.total
if not current then current, total = cur[7] or '', cur[8] or '' end
local lines = a.lines or {}
if state == cur_state and progress == old and message == (cur[4] or '')
   and stage == (cur[5] or '') and current == (cur[7] or '') and total == (cur[8] or '')
   and not a.result and #lines == 0 then
  return dropped(false)
end

-- A failed attempt with attempts left waits for its next one (lib/retry.lua).
local retry_in = nil
if state == a.failed and not a.no_retry then
  retry_in = retry_delay(a, k, cur_attempt, a.jitter)
  if retry_in then state = a.scheduled end
end

-- The hash's fields this report sets, for one HSET.
local function changed_fields()
  local fields = {'state', state, 'progress', progress, 'message', message,
                  'stage', stage, 'updated_at', now}
  local function add(name, value)
    fields[#fields + 1] = name; fields[#fields + 1] = value
  end
  if seq then add(seq_field, seq) end
  if current ~= '' then add('current', current); add('total', total) end
  if a.result then add('result', a.result) end
  if not cur[12] then add('started_at', now) end  -- the first change of a run (a retry clears it)
  if a.terminal[state] then add('finished_at', now) end
  add('reported_at', now)
  return fields
end

-- Append lines to the log stream, trimmed once (with the last line) to the newest
-- a.log_max, expiring with the hash; the new lines' ids, in order.
local function append_log(new_lines)
  local ids = {}
  for i = 1, #new_lines - 1 do
    ids[i] = redis.call('XADD', logk, '*', 'text', new_lines[i])
  end
  ids[#new_lines] = redis.call('XADD', logk, 'MAXLEN', a.log_max, '*', 'text',
                               new_lines[#new_lines])
  local pttl = redis.call('PTTL', k)
  if pttl > 0 then redis.call('PEXPIRE', logk, pttl) end
  return ids
end

-- The bytes this report adds to what the job stores (its owners' quota).
local function stored_bytes()
  local bytes = 0
  if a.result then
    bytes = #a.result - redis.call('HSTRLEN', k, 'result')
    if bytes < 0 then bytes = 0 end
  end
  if #lines > 0 then
    local room = a.log_max - redis.call('XLEN', logk)
    for i = 1, math.min(room, #lines) do bytes = bytes + #lines[i] end
  end
  return bytes
end

if cur[16] and cur[16] ~= '' and (a.result or #lines > 0) then
  local expires_at = quota_expiry(a, k)
  if expires_at then quota_add(a, {cur[16], cur[17]}, 'bytes', stored_bytes(), expires_at) end
end

local fields = changed_fields()
local log_after, log_ids = cur[9] or a.log_start, {}
if #lines > 0 then
  log_ids = append_log(lines)
  fields[#fields + 1] = 'log_last'; fields[#fields + 1] = log_ids[#log_ids]
end
redis.call('HSET', k, unpack(fields))
local retried = {}
if retry_in then
  local at = retry_later(a, k, cur_attempt, retry_in, message)
  progress, current, total, stage = 0, '', '', ''
  message = redis.call('HGET', k, 'message')
  retried = {'retry_at', at, 'attempt', cur_attempt + 1,
             'max_attempts', redis.call('HGET', k, 'max_attempts'),
             'failures', redis.call('HGET', k, 'failures')}
end
renew(a.terminal[state] == true or retry_in ~= nil)
local batch_done = 0
if state ~= cur_state then
  batch_done = transition(a, k, a.id, cur_state, state, cur[10], cur[13])
  redis.call('ZREMRANGEBYSCORE', a.state_index .. state, '-inf', tonumber(now) - a.ttl)
end
if state == a.running then  -- a sign of life: the stall deadline moves on
  if cur[19] then redis.call('ZADD', a.stall_deadlines, tonumber(now) + tonumber(cur[19]), a.id) end
  if cur[20] then
    redis.call('HDEL', k, 'stalled')
    redis.call('ZREM', a.stalled_index, a.id)
  end
end
local answer = {'code', 1, 'state', state, 'progress', progress, 'message', message, 'stage', stage,
        'kind', cur[6] or '', 'current', current, 'total', total,
        'result', a.result or '', 'log_after', log_after, 'log_ids', log_ids,
        'created_at', cur[10] or '', 'owner', cur[11] or '', 'batch_id', cur[13] or '',
        'batch_done', batch_done, 'cancel_requested', cancel_requested}
for _, value in ipairs(retried) do answer[#answer + 1] = value end
return answer
