-- create_job.lua: store a new job and list it in every index, atomically.
--
-- KEYS[1]   the job's hash (shared.keys.job_key)
-- KEYS[2]   the recent-jobs index (shared.keys.RECENT_JOBS)
-- ARGV[1]   one JSON object, the fields below (shared.store.JobStore._create_call):
--   a.id            the job id
--   a.now           now, epoch seconds as text
--   a.ttl           the TTL in seconds
--   a.max_stored    how many ids the recent index keeps
--   a.fields        the hash's fields, an object {name: text} (state and kind among
--                   them; owner and batch_id when it has them)
--   a.state_index   the prefix of the state indexes (shared.keys.state_index(''))
--   a.kind_index    the prefix of the kind indexes (shared.keys.kind_index(''))
--   a.owner_index   the prefix of the owner indexes (shared.keys.owner_index(''))
--   a.batch_index   the prefix of the batch indexes (shared.keys.batch_index(''))
--   a.timeline      the suffix of a job's timeline key (shared.keys.job_timeline_key)
--
-- The job is listed, scored by its creation time, in the recent index and in
-- <state_index><state>, <kind_index><kind> and (when not empty)
-- <owner_index><owner>, and a batch's child in <batch_index><batch id>. Each
-- index it joins is trimmed of entries older than the TTL. The owner and batch
-- indexes (one per browser session, per batch) also expire a TTL after their
-- newest job, so they do not outlive their jobs. The job's timeline
-- (KEYS[1] .. a.timeline, "<state> <time>" entries) starts with its first state.
-- (Index keys are built here from their prefixes: one Redis, no cluster.)
-- Returns 1.
local a = cjson.decode(ARGV[1])
local k, recent = KEYS[1], KEYS[2]
local id, now, ttl, by_name = a.id, a.now, a.ttl, a.fields
local fields = {}
for name, value in pairs(by_name) do
  fields[#fields + 1] = name; fields[#fields + 1] = value
end
redis.call('HSET', k, unpack(fields))
redis.call('EXPIRE', k, ttl)
local timeline = k .. a.timeline
redis.call('DEL', timeline)
redis.call('RPUSH', timeline, (by_name['state'] or '') .. ' ' .. now)
redis.call('EXPIRE', timeline, ttl)
local oldest = tonumber(now) - ttl
redis.call('ZADD', recent, now, id)
redis.call('ZREMRANGEBYSCORE', recent, '-inf', oldest)
redis.call('ZREMRANGEBYRANK', recent, 0, -(a.max_stored + 1))
local indexes = {a.state_index .. (by_name['state'] or ''),
                 a.kind_index .. (by_name['kind'] or '')}
for _, index in ipairs(indexes) do
  redis.call('ZADD', index, now, id)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', oldest)
end
for name, prefix in pairs({owner = a.owner_index, batch_id = a.batch_index}) do
  local value = by_name[name]
  if value and value ~= '' then
    local index = prefix .. value
    redis.call('ZADD', index, now, id)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', oldest)
    redis.call('EXPIRE', index, ttl)
  end
end
return 1
