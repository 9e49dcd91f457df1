-- fair_admit.lua: let a tenant's new jobs into a lane's queue, at most a.depth waiting
-- there at once; hold the rest back, in order (shared.fairshare.FairShare.admit).
--
-- KEYS[1]   the ids of this lane and tenant admitted to the queue, a set
-- KEYS[2]   the ids of this lane and tenant held back, a list (oldest first)
-- KEYS[3]   every admitted id -> "<lane>|<tenant>", a hash (shared.keys.FAIR_SLOTS)
-- ARGV[1]   one JSON object:
--   a.ids         the new jobs' ids, in order (may be empty: only heal)
--   a.slot        "<lane>|<tenant>"
--   a.depth       how many of the tenant's jobs may wait in the lane's queue at once
--   a.job_prefix  the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.queued      the name of the queued state
--   a.ttl         seconds the held list lives after its last push (the job TTL)
--
-- First it heals: an admitted id whose job is no longer queued (it started, ended or
-- expired and its release was missed) gives its place back. Free places go to the
-- held ids first (oldest first, skipping those no longer queued), then to the new
-- ids; new ids go behind the held ones, so a tenant's jobs keep their order.
--
-- Returns {admitted_from_held, admitted_new}: two lists of ids, each in order.
local a = cjson.decode(ARGV[1])
local admitted, held, slots = KEYS[1], KEYS[2], KEYS[3]

local function queued(id)
  return redis.call('HGET', a.job_prefix .. id, 'state') == a.queued
end

for _, id in ipairs(redis.call('SMEMBERS', admitted)) do
  if not queued(id) then
    redis.call('SREM', admitted, id)
    redis.call('HDEL', slots, id)
  end
end

local free = a.depth - redis.call('SCARD', admitted)
local from_held, new = {}, {}
local function admit(id, into)
  redis.call('SADD', admitted, id)
  redis.call('HSET', slots, id, a.slot)
  into[#into + 1] = id
  free = free - 1
end

while free > 0 do
  local id = redis.call('LPOP', held)
  if not id then break end
  if queued(id) then admit(id, from_held) end
end

local rest = {}
for _, id in ipairs(a.ids) do
  if free > 0 and redis.call('LLEN', held) == 0 then admit(id, new) else rest[#rest + 1] = id end
end
for i = 1, #rest, 1000 do
  redis.call('RPUSH', held, unpack(rest, i, math.min(i + 999, #rest)))
end
if #rest > 0 then redis.call('EXPIRE', held, a.ttl) end
return {from_held, new}
