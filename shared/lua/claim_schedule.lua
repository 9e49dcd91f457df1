-- claim_schedule.lua: take one due run of a recurring schedule, exactly once.
--
-- KEYS[1]   the due index (shared.keys.SCHEDULES_DUE: schedule id -> next run time)
-- KEYS[2]   the schedule's hash (shared.keys.schedule_key)
-- ARGV[1]   the schedule id
-- ARGV[2]   the due time the caller read (the score it saw)
-- ARGV[3]   the run after that one (epoch seconds), computed from the cron string
-- ARGV[4]   now, epoch seconds as text
--
-- Several tick processes may see the same due run: only the one whose score
-- still matches moves the schedule to its next run, so each run fires once.
-- A paused or deleted schedule is not due (and leaves the index).
-- Returns 1 when claimed, 0 when another process did or it is paused.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
local paused = redis.call('HGET', KEYS[2], 'paused')
if paused == false or paused == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], 'next_run', ARGV[3], 'last_run', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'runs', 1)
return 1
