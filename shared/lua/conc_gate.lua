-- conc_gate.lua: jobs about to join their queue ask for a concurrency slot; those of
-- a full group are held back, in order (shared.concurrency.ConcurrencyLimits.gate).
--
-- KEYS[1]   every id holding a slot -> its group, a hash (shared.keys.CONC_SLOTS)
-- KEYS[2]   the groups that hold jobs back, a set (shared.keys.CONC_GROUPS)
-- ARGV[1]   one JSON object:
--   a.ids         the jobs' ids, in order
--   a.policies    kind -> {limit, key}: the kinds with a concurrency limit
--   a.prefix      the prefix of the groups' keys (shared.keys.CONC_PREFIX)
--   a.job_prefix  the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.queued      the name of the queued state
--   a.running     the name of the running state
--   a.look        held ids looked at per group and call, at most (lib/conc.lua)
--   a.ttl         seconds a held list lives after its last push (the job TTL)
--
-- An id passes when it holds a slot already, is not queued, or its kind has no limit.
-- Otherwise its group is read from its kind and the value of the kind's key argument
-- (the job hash's "args", JSON: a string as is, anything else as JSON; a value over 100
-- bytes by its SHA-1); the group is healed and its free slots go to held ids first
-- (lib/conc.lua); then the id takes a free slot, if there is one and none is held, or
-- is held at the back, with "held_by" on its hash: {limit, taken, key, value}.
--
-- Returns {passed ids, held ids, promoted}: promoted is flat, id, kind, tenant per held
-- job that took a slot freed meanwhile (it joins its queue now).
local a = cjson.decode(ARGV[1])
--! include conc

local function key_value(raw, key)
  if key == '' then return '' end
  local ok, args = pcall(cjson.decode, raw or '')
  if not ok or type(args) ~= 'table' then return '' end
  local v = args[key]
  if v == nil or v == cjson.null then return '' end
  if type(v) == 'string' then return v end
  return cjson.encode(v)
end

local passed, held, promoted, healed = {}, {}, {}, {}
for _, id in ipairs(a.ids) do
  local f = redis.call('HMGET', a.job_prefix .. id, 'state', 'kind', 'args')
  local p = f[2] and a.policies[f[2]]
  if redis.call('HEXISTS', KEYS[1], id) == 1 or f[1] ~= a.queued or not p then
    passed[#passed + 1] = id
  else
    local value = key_value(f[3], p.key)
    local group = f[2] .. '|' .. value
    if #value > 100 then group = f[2] .. '|#' .. redis.sha1hex(value) end
    if not healed[group] then
      conc_heal(group)
      conc_fill(group, p.limit, promoted)
      healed[group] = true
    end
    local taken, list = a.prefix .. 'taken:' .. group, a.prefix .. 'held:' .. group
    local count = redis.call('SCARD', taken)
    if count < p.limit and redis.call('LLEN', list) == 0 then
      redis.call('SADD', taken, id)
      redis.call('HSET', KEYS[1], id, group)
      redis.call('HDEL', a.job_prefix .. id, 'held_by')
      passed[#passed + 1] = id
    else
      redis.call('RPUSH', list, id)
      redis.call('EXPIRE', list, a.ttl)
      redis.call('SADD', KEYS[2], group)
      redis.call('HSET', a.job_prefix .. id, 'held_by',
                 cjson.encode({limit = p.limit, taken = count, key = p.key, value = value}))
      held[#held + 1] = id
    end
  end
end
return {passed, held, promoted}
