-- create_job.lua: store a new job and list it in every index, atomically.
--
-- KEYS[1]   the job's hash (shared.keys.job_key)
-- KEYS[2]   the recent-jobs index (shared.keys.RECENT_JOBS)
-- ARGV[1]   the job id             ARGV[2]  now, epoch seconds as text
-- ARGV[3]   the TTL in seconds     ARGV[4]  how many ids the recent index keeps
-- ARGV[5]   the index key prefix (shared.keys.INDEX_PREFIX)
-- ARGV[6..] the hash's field/value pairs (state, kind and owner among them)
--
-- The job is listed, scored by its creation time, in the recent index and in
-- <prefix>state:<state>, <prefix>kind:<kind> and (when not empty)
-- <prefix>owner:<owner>, and a batch's child in <prefix>batch:<batch id>. Each index it joins is trimmed of entries older than
-- the TTL. The owner and batch indexes (one per browser session, per batch) also expire
-- a TTL after their newest job, so they do not outlive their jobs. The job's timeline (KEYS[1]:timeline, "<state> <time>" entries)
-- starts with its first state. (Index keys are built here from the prefix: one Redis, no cluster.)
-- Returns 1.
local k, recent = KEYS[1], KEYS[2]
local id, now, ttl, max_stored, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]),
  tonumber(ARGV[4]), ARGV[5]
local fields = {}
local by_name = {}
for i = 6, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]; fields[#fields + 1] = ARGV[i + 1]
  by_name[ARGV[i]] = ARGV[i + 1]
end
redis.call('HSET', k, unpack(fields))
redis.call('EXPIRE', k, ttl)
redis.call('DEL', k .. ':timeline')
redis.call('RPUSH', k .. ':timeline', (by_name['state'] or '') .. ' ' .. now)
redis.call('EXPIRE', k .. ':timeline', ttl)
local oldest = tonumber(now) - ttl
redis.call('ZADD', recent, now, id)
redis.call('ZREMRANGEBYSCORE', recent, '-inf', oldest)
redis.call('ZREMRANGEBYRANK', recent, 0, -(max_stored + 1))
local indexes = {prefix .. 'state:' .. (by_name['state'] or ''),
                 prefix .. 'kind:' .. (by_name['kind'] or '')}
for _, idx in ipairs(indexes) do
  redis.call('ZADD', idx, now, id)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', oldest)
end
for _, name in ipairs({'owner', 'batch_id'}) do
  local value = by_name[name]
  if value and value ~= '' then
    local idx = prefix .. (name == 'owner' and 'owner:' or 'batch:') .. value
    redis.call('ZADD', idx, now, id)
    redis.call('ZREMRANGEBYSCORE', idx, '-inf', oldest)
    redis.call('EXPIRE', idx, ttl)
  end
end
return 1
