-- fleet_seen.lua: a worker was seen (a claim, a heartbeat, RQ's registry): note when,
-- and what it holds, in a bounded record (shared/fleet.py).
--
-- KEYS[1]   the workers by last seen, a sorted set (shared.keys.FLEET_WORKERS)
-- KEYS[2]   each external kind's last claim time, a hash (shared.keys.FLEET_KIND_CLAIMS)
-- ARGV[1]   one JSON object, the fields below (shared.fleet.Fleet._seen_call):
--   a.member      the worker's member: "ext:<name>" or "rq:<name>"
--   a.now         its last-seen time, epoch seconds (a number)
--   a.fields      {name: text} set on the worker's hash (a.prefix .. a.member)
--   a.kinds       the external kinds it claimed now (their last claim time becomes a.now)
--   a.prefix      the prefix of the workers' hashes (shared.keys.FLEET_WORKER_PREFIX)
--   a.cutoff      workers last seen before this are dropped (with their hash)
--   a.max         at most this many workers are kept (the least recently seen go)
--   a.ttl         seconds the worker's hash lives without being seen again
--
-- At most 100 workers are dropped by age per run; the cap drops the rest.
-- Returns the number of workers dropped.
local a = cjson.decode(ARGV[1])
local workers, claims = KEYS[1], KEYS[2]

redis.call('ZADD', workers, a.now, a.member)
local hash = a.prefix .. a.member
local flat = {}
for name, value in pairs(a.fields) do
  flat[#flat + 1] = name
  flat[#flat + 1] = tostring(value)
end
if #flat > 0 then redis.call('HSET', hash, unpack(flat)) end
redis.call('EXPIRE', hash, a.ttl)
for _, kind in ipairs(a.kinds) do
  redis.call('HSET', claims, kind, tostring(a.now))
end

local dropped = 0
local old = redis.call('ZRANGEBYSCORE', workers, '-inf', '(' .. a.cutoff, 'LIMIT', 0, 100)
for _, member in ipairs(old) do
  redis.call('DEL', a.prefix .. member)
  redis.call('ZREM', workers, member)
  dropped = dropped + 1
end
local extra = redis.call('ZCARD', workers) - a.max
if extra > 0 then
  local oldest = redis.call('ZRANGE', workers, 0, extra - 1)
  for _, member in ipairs(oldest) do
    redis.call('DEL', a.prefix .. member)
  end
  redis.call('ZREMRANGEBYRANK', workers, 0, extra - 1)
  dropped = dropped + extra
end
return dropped
