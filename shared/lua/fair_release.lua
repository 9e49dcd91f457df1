-- fair_release.lua: an admitted job left its lane's queue (a worker took it, or it
-- ended): its place goes to its tenant's next held job (shared.fairshare.FairShare.release).
--
-- KEYS[1]   every admitted id -> "<lane>|<tenant>", a hash (shared.keys.FAIR_SLOTS)
-- ARGV[1]   one JSON object:
--   a.id          the job that left the queue
--   a.prefix      the prefix of the lanes' keys (shared.keys.FAIR_PREFIX)
--   a.depth       how many of a tenant's jobs may wait in a lane's queue at once
--   a.job_prefix  the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.queued      the name of the queued state
--   a.limit       at most this many held ids are looked at (those no longer queued,
--                 say a cancelled batch's, are dropped on the way)
--
-- The admitted and held keys are "<a.prefix>admitted:<slot>" and "<a.prefix>held:<slot>"
-- (the slot read from KEYS[1]): a job's lane and tenant are known only once it is read.
-- A job that holds no place (never admitted, or released already) changes nothing.
--
-- Returns {slot, ids admitted now, more}: slot '' when nothing changed; more 1 when
-- a.limit ids were looked at and more are held.
local a = cjson.decode(ARGV[1])
local slots = KEYS[1]
local slot = redis.call('HGET', slots, a.id)
if not slot then return {'', {}, 0} end
redis.call('HDEL', slots, a.id)
local admitted, held = a.prefix .. 'admitted:' .. slot, a.prefix .. 'held:' .. slot
redis.call('SREM', admitted, a.id)

local free = a.depth - redis.call('SCARD', admitted)
local now, looked = {}, 0
while free > 0 and looked < a.limit do
  local id = redis.call('LPOP', held)
  if not id then break end
  looked = looked + 1
  if redis.call('HGET', a.job_prefix .. id, 'state') == a.queued then
    redis.call('SADD', admitted, id)
    redis.call('HSET', slots, id, slot)
    now[#now + 1] = id
    free = free - 1
  end
end
local more = 0
if looked >= a.limit and redis.call('LLEN', held) > 0 then more = 1 end
return {slot, now, more}
