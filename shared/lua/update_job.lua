-- update_job.lua: apply one progress report to a job, atomically, with its log lines.
--
-- KEYS[1]   the job's hash (shared.keys.job_key)
-- KEYS[2]   the job's log, a stream (shared.keys.job_log_key)
-- KEYS[3]   the lease deadlines of external jobs, a sorted set (shared.keys.EXTERNAL_LEASES)
-- ARGV[1]   the reported state        ARGV[2]  progress, 0..100
-- ARGV[3]   message                   ARGV[4]  stage
-- ARGV[5]   seq ('' when the report has none)
-- ARGV[6]   now, epoch seconds as text
-- ARGV[7]   current ('' for none)     ARGV[8]  total ('' for none)
-- ARGV[9]   the result as JSON text ('' for none)
-- ARGV[10]  how many log lines to keep (JOB_LOG_MAX)
-- ARGV[11]  the name of the succeeded state
-- ARGV[12]  the name of the queued state
-- ARGV[13]  the attempt the report is for ('' or '0': any attempt)
-- ARGV[14]  the job id               ARGV[15] the index key prefix (shared.keys.INDEX_PREFIX)
-- ARGV[16]  the TTL in seconds (index entries older than it are trimmed)
-- ARGV[17]  the batch key prefix (shared.keys.batch_key without the id)
-- ARGV[18]  the lease deadline an accepted report gives an external job, epoch
--           seconds as text ('' for none)
-- ARGV[19]  n, how many terminal state names follow
-- ARGV[20 .. 19+n]   the names of the terminal states
-- ARGV[20+n ..]      the new log lines, in order
--
-- Rules: an unknown job is refused; a report for another attempt (the job was
-- retried since) is refused; a terminal job never changes; a seq not above the
-- stored one is dropped; progress never goes back; a report that changes
-- nothing (no new field value, no log line) is dropped. Log lines are appended
-- only when the update is applied. A change of state moves the
-- job from <prefix>state:<old> to <prefix>state:<new> (scored by its creation
-- time), in the same script, so the indexes never disagree with the hash,
-- and appends "<state> <now>" to the job's timeline (KEYS[1]:timeline, a list).
-- A report that is not refused (applied or dropped) renews the lease of a
-- claimed external job (renew_lease.lua's rule, without a second script run):
-- the deadline moves to ARGV[18], or the lease is gone once the job has ended.
--
-- Returns field/value pairs (shared.scripts.pairs turns them into a dict):
--   code -1                 unknown job
--   code -2, state, attempt stale attempt; attempt is the job's current one
--   code 0, state           dropped; state is the job's current state
--   code 1, state, progress, message, stage, kind, snippet_id, current, total,
--           result, log_after, log_ids, created_at, owner      applied; log_after is the id of the
--           line before the new ones ('0-0' for none), log_ids the new lines' ids
local k, logk = KEYS[1], KEYS[2]
local state, progress, message, stage, seq, now = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4],
  ARGV[5], ARGV[6]
local current, total, result = ARGV[7], ARGV[8], ARGV[9]
local log_max = tonumber(ARGV[10])
local succeeded, queued, for_attempt = ARGV[11], ARGV[12], tonumber(ARGV[13]) or 0
local job_id, prefix, ttl = ARGV[14], ARGV[15], tonumber(ARGV[16])
local batch_prefix = ARGV[17]
local lease_until = ARGV[18]
local n_terminal = tonumber(ARGV[19])
local terminal = {}
for i = 20, 19 + n_terminal do terminal[ARGV[i]] = true end
local first_line = 20 + n_terminal

local cur = redis.call('HMGET', k, 'state', 'progress', 'seq', 'message', 'stage', 'kind',
                       'snippet_id', 'current', 'total', 'log_last', 'created_at',
                       'owner', 'started_at', 'batch_id', 'attempt', 'external')
local cur_state, cur_progress, cur_seq = cur[1], cur[2], cur[3]
if not cur_state then return {'code', -1} end
local cur_attempt = tonumber(cur[15]) or 1
if for_attempt > 0 and for_attempt ~= cur_attempt then
  return {'code', -2, 'state', cur_state, 'attempt', cur_attempt}
end
local function keep_lease(ended)
  if lease_until == '' or cur[16] ~= '1' then return end
  if ended then
    redis.call('ZREM', KEYS[3], job_id)
  else
    redis.call('ZADD', KEYS[3], 'XX', lease_until, job_id)
  end
end
if terminal[cur_state] then
  keep_lease(true)
  return {'code', 0, 'state', cur_state}
end
if seq ~= '' and cur_seq and cur_seq ~= '' and tonumber(seq) <= tonumber(cur_seq) then
  keep_lease(false)
  return {'code', 0, 'state', cur_state}
end
local old = tonumber(cur_progress) or 0
if progress < old then progress = old end
if state == succeeded then progress = 100 end
if current == '' then current, total = cur[8] or '', cur[9] or '' end
local has_lines = #ARGV >= first_line
if state == cur_state and progress == old and message == (cur[4] or '')
   and stage == (cur[5] or '') and current == (cur[8] or '') and total == (cur[9] or '')
   and result == '' and not has_lines then
  keep_lease(false)
  return {'code', 0, 'state', cur_state}
end
local fields = {'state', state, 'progress', progress, 'message', message,
                'stage', stage, 'updated_at', now}
if seq ~= '' then
  table.insert(fields, 'seq'); table.insert(fields, seq)
end
if current ~= '' then
  table.insert(fields, 'current'); table.insert(fields, current)
  table.insert(fields, 'total'); table.insert(fields, total)
end
if result ~= '' then
  table.insert(fields, 'result'); table.insert(fields, result)
end
if not cur[13] then  -- the first change of a run (a retry clears started_at)
  table.insert(fields, 'started_at'); table.insert(fields, now)
end
if terminal[state] then
  table.insert(fields, 'finished_at'); table.insert(fields, now)
end
local log_after = cur[10] or '0-0'
local log_ids = {}
if has_lines then
  -- Trim once, with the batch's last line: the stream holds at most log_max after it.
  for i = first_line, #ARGV - 1 do
    log_ids[#log_ids + 1] = redis.call('XADD', logk, '*', 'text', ARGV[i])
  end
  log_ids[#log_ids + 1] = redis.call('XADD', logk, 'MAXLEN', log_max, '*', 'text', ARGV[#ARGV])
  table.insert(fields, 'log_last'); table.insert(fields, log_ids[#log_ids])
  local ttl = redis.call('PTTL', k)
  if ttl > 0 then redis.call('PEXPIRE', logk, ttl) end
end
redis.call('HSET', k, unpack(fields))
keep_lease(terminal[state] == true)
if state ~= cur_state then
  local timeline = k .. ':timeline'
  redis.call('RPUSH', timeline, state .. ' ' .. now)
  redis.call('LTRIM', timeline, -100, -1)
  local hash_ttl = redis.call('PTTL', k)
  if hash_ttl > 0 then redis.call('PEXPIRE', timeline, hash_ttl) end
  local created = cur[11] or now
  local idx = prefix .. 'state:' .. state
  redis.call('ZREM', prefix .. 'state:' .. cur_state, job_id)
  redis.call('ZADD', idx, created, job_id)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', tonumber(now) - ttl)
end
-- A child of a batch moves the batch's totals in the same step; the one
-- change that makes every child final learns it (batch_done 1), once.
local batch_done = 0
if cur[14] and state ~= cur_state then
  local bk = batch_prefix .. cur[14]
  if redis.call('EXISTS', bk) == 1 then
    redis.call('HINCRBY', bk, cur_state, -1)
    redis.call('HINCRBY', bk, state, 1)
    if terminal[state] and not terminal[cur_state] then
      local done = redis.call('HINCRBY', bk, 'done', 1)
      if done == tonumber(redis.call('HGET', bk, 'total')) then
        if redis.call('HSETNX', bk, 'completed_at', now) == 1 then batch_done = 1 end
      end
    end
  end
end
return {'code', 1, 'state', state, 'progress', progress, 'message', message, 'stage', stage,
        'kind', cur[6] or '', 'snippet_id', cur[7] or '', 'current', current, 'total', total,
        'result', result, 'log_after', log_after, 'log_ids', log_ids,
        'created_at', cur[11] or '', 'owner', cur[12] or '', 'batch_id', cur[14] or '',
        'batch_done', batch_done}
