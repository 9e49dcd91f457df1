-- update_job.lua: apply one progress report to a job's hash, atomically.
--
-- KEYS[1]   the job's hash (shared.keys.job_key)
-- ARGV[1]   the reported state        ARGV[2]  progress, 0..100
-- ARGV[3]   message                   ARGV[4]  stage
-- ARGV[5]   seq ('' when the report has none)
-- ARGV[6]   now, epoch seconds as text
-- ARGV[7]   the name of the succeeded state
-- ARGV[8]   the name of the queued state
-- ARGV[9]   the attempt the report is for ('' or '0': any attempt)
-- ARGV[10..] the names of the terminal states
--
-- Rules: an unknown job is refused; a report for another attempt (the job was
-- retried since) is refused; a terminal job never changes; a seq not above the
-- stored one is dropped; progress never goes back; a report that changes
-- nothing is dropped.
--
-- Returns field/value pairs (shared.scripts.pairs turns them into a dict):
--   code -1                          unknown job
--   code -2, state, attempt          stale attempt; attempt is the job's current one
--   code 0, state                    dropped; state is the job's current state
--   code 1, state, progress, message, stage, kind, snippet_id   applied
local k = KEYS[1]
local state, progress, message, stage, seq, now = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4],
  ARGV[5], ARGV[6]
local succeeded, queued, for_attempt = ARGV[7], ARGV[8], tonumber(ARGV[9]) or 0
local terminal = {}
for i = 10, #ARGV do terminal[ARGV[i]] = true end

local cur = redis.call('HMGET', k, 'state', 'progress', 'seq', 'message', 'stage', 'kind',
                       'snippet_id', 'attempt')
local cur_state, cur_progress, cur_seq = cur[1], cur[2], cur[3]
if not cur_state then return {'code', -1} end
local cur_attempt = tonumber(cur[8]) or 1
if for_attempt > 0 and for_attempt ~= cur_attempt then
  return {'code', -2, 'state', cur_state, 'attempt', cur_attempt}
end
if terminal[cur_state] then return {'code', 0, 'state', cur_state} end
if seq ~= '' and cur_seq and cur_seq ~= '' and tonumber(seq) <= tonumber(cur_seq) then
  return {'code', 0, 'state', cur_state}
end
local old = tonumber(cur_progress) or 0
if progress < old then progress = old end
if state == succeeded then progress = 100 end
if state == cur_state and progress == old and message == (cur[4] or '')
   and stage == (cur[5] or '') then
  return {'code', 0, 'state', cur_state}
end
local fields = {'state', state, 'progress', progress, 'message', message,
                'stage', stage, 'updated_at', now}
if seq ~= '' then
  table.insert(fields, 'seq'); table.insert(fields, seq)
end
if cur_state == queued then
  table.insert(fields, 'started_at'); table.insert(fields, now)
end
if terminal[state] then
  table.insert(fields, 'finished_at'); table.insert(fields, now)
end
redis.call('HSET', k, unpack(fields))
return {'code', 1, 'state', state, 'progress', progress, 'message', message, 'stage', stage,
        'kind', cur[6] or '', 'snippet_id', cur[7] or ''}
