-- history_depth.lua: sample the queue depth into the history's current buckets.
--
-- KEYS[1]   the queued jobs' state index (shared.keys.state_index('queued'))
-- ARGV[1]   one JSON object, the fields below (shared.history.DepthSampler.sample):
--   a.now      now, epoch seconds as text
--   a.buckets  the resolutions, [{prefix, width, ttl}] (shared.history.LUA_FIELDS)
--
-- Each current bucket's 'depth' keeps the highest count seen in it (the peak, as
-- lib/transition.lua's history_end keeps it when a job ends); a bucket that exists
-- only for its depth expires like the others. Worker/cron.py runs it once a tick.
--
-- Returns the count.
local a = cjson.decode(ARGV[1])
local depth = redis.call('ZCARD', KEYS[1])
local t = tonumber(a.now)
for _, b in ipairs(a.buckets) do
  local key = b.prefix .. string.format('%d', t - t % b.width)
  local seen = tonumber(redis.call('HGET', key, 'depth'))
  if not seen or depth > seen then redis.call('HSET', key, 'depth', depth) end
  redis.call('EXPIRE', key, b.ttl)
end
return depth
