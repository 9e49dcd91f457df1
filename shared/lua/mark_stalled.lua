-- mark_stalled.lua: mark the running jobs whose stall deadline has passed as stalled.
--
-- KEYS[1]   the stall deadlines, a sorted set (shared.keys.STALL_DEADLINES)
-- KEYS[2]   the stalled jobs, scored by creation time (shared.keys.STALLED_INDEX)
-- ARGV[1]   one JSON object, the fields below (shared.store.JobStore.mark_stalled):
--   a.now         now, epoch seconds as text
--   a.limit       at most this many jobs per run
--   a.job_prefix  the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.running     the name of the running state
--
-- The deadline is the job's last report (or its start) plus its stall_after; the
-- store's scripts move it on each applied report and drop it when the job stops
-- running (update_job.lua, lib/transition.lua), so only the due head of the set is
-- read here: no scan of the running jobs. A due job leaves the set (its next report
-- puts it back); a running one gets 'stalled' (the time it was found) and joins the
-- stalled index, until a report or its end takes it out.
--
-- Returns the ids marked now.
local a = cjson.decode(ARGV[1])
local deadlines, stalled = KEYS[1], KEYS[2]
local marked = {}
local ids = redis.call('ZRANGEBYSCORE', deadlines, '-inf', a.now, 'LIMIT', 0, a.limit)
for _, id in ipairs(ids) do
  redis.call('ZREM', deadlines, id)
  local k = a.job_prefix .. id
  local cur = redis.call('HMGET', k, 'state', 'created_at')
  if cur[1] == a.running then
    redis.call('HSET', k, 'stalled', a.now)
    redis.call('ZADD', stalled, tonumber(cur[2]) or tonumber(a.now), id)
    marked[#marked + 1] = id
  end
end
return marked
