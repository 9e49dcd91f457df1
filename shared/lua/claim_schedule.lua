-- claim_schedule.lua: take one due run of a recurring schedule, exactly once.
--
-- KEYS[1]   the due index (shared.keys.SCHEDULES_DUE: schedule id -> next run time)
-- KEYS[2]   the schedule's hash (shared.keys.schedule_key)
-- ARGV[1]   one JSON object, the fields below (shared.schedules.ScheduleStore.claim_due):
--   a.id        the schedule id
--   a.due       the due time the caller read (the score it saw), epoch seconds as text
--   a.next_run  the run after that one, epoch seconds as text (from the cron string)
--   a.now       now, epoch seconds as text
--
-- Several tick processes may see the same due run: only the one whose score
-- still matches moves the schedule to its next run, so each run fires once.
-- A paused or deleted schedule is not due (and leaves the index).
-- Returns 1 when claimed, 0 when another process did or it is paused.
local a = cjson.decode(ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], a.id)
if not score or tonumber(score) ~= tonumber(a.due) then return 0 end
local paused = redis.call('HGET', KEYS[2], 'paused')
if paused == false or paused == '1' then
  redis.call('ZREM', KEYS[1], a.id)
  return 0
end
redis.call('ZADD', KEYS[1], a.next_run, a.id)
redis.call('HSET', KEYS[2], 'next_run', a.next_run, 'last_run', a.now)
redis.call('HINCRBY', KEYS[2], 'runs', 1)
return 1
