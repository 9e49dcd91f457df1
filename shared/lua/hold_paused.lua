-- hold_paused.lua: hold back the RQ jobs of paused kinds instead of queueing them
-- (shared.pause.KindPause.hold), atomically with the pause flag: a resume that
-- clears the flag, then takes the held list, never misses one.
--
-- KEYS[1]   the names of the paused kinds, a set (shared.keys.PAUSED_KINDS)
-- ARGV[1]   one JSON object:
--   a.ids      job ids, in order
--   a.kinds    the kind of each id, in the same order
--   a.prefix   the prefix of the held lists (shared.keys.PAUSE_HELD_PREFIX)
--   a.ttl      seconds a held list lives after its last push (the job TTL)
--
-- Returns the ids held back (their kind is paused), in order; the others are to be
-- queued as usual.
local a = cjson.decode(ARGV[1])
local paused = KEYS[1]
local held = {}
if redis.call('SCARD', paused) == 0 then return held end
for i, id in ipairs(a.ids) do
  local kind = a.kinds[i]
  if kind and redis.call('SISMEMBER', paused, kind) == 1 then
    local list = a.prefix .. kind
    redis.call('RPUSH', list, id)
    redis.call('EXPIRE', list, a.ttl)
    held[#held + 1] = id
  end
end
return held
