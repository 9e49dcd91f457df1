-- conc_release.lua: ended jobs give their concurrency slots back; held jobs take them
-- (shared.concurrency.ConcurrencyLimits.release, .heal).
--
-- KEYS[1]   every id holding a slot -> its group, a hash (shared.keys.CONC_SLOTS)
-- KEYS[2]   the groups that hold jobs back, a set (shared.keys.CONC_GROUPS)
-- ARGV[1]   one JSON object:
--   a.ids         the jobs that changed (those still queued or running keep their slot)
--   a.every       true: also heal and fill every group that holds jobs back
--   a.policies    kind -> {limit, key}: the kinds with a concurrency limit (a group
--                 of a kind no longer limited lets all its held jobs through)
--   a.prefix      the prefix of the groups' keys (shared.keys.CONC_PREFIX)
--   a.job_prefix  the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.queued      the name of the queued state
--   a.running     the name of the running state
--   a.look        held ids looked at per group and call, at most (lib/conc.lua)
--
-- Returns promoted, flat: id, kind, tenant per held job that took a freed slot.
local a = cjson.decode(ARGV[1])
--! include conc

local function limit_of(group)
  local kind = string.match(group, '^([^|]*)|')
  local p = kind and a.policies[kind]
  if p then return p.limit end
  return a.look
end

local promoted = {}
for _, id in ipairs(a.ids) do
  local group = redis.call('HGET', KEYS[1], id)
  if group and not conc_live(id) then
    redis.call('HDEL', KEYS[1], id)
    redis.call('SREM', a.prefix .. 'taken:' .. group, id)
    conc_heal(group)
    conc_fill(group, limit_of(group), promoted)
  end
end
if a.every then
  for _, group in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    conc_heal(group)
    conc_fill(group, limit_of(group), promoted)
  end
end
return promoted
