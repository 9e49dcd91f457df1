-- lib/conc.lua: a concurrency group's slots (shared.concurrency). Included (a line
-- "--! include conc", shared/scripts.py) by conc_gate (a job asks for a slot) and
-- conc_release (a job gives its slot back).
--
-- A group is "<kind>|<value of the key argument>"; its keys are "<a.prefix>taken:<group>"
-- (a set: the ids holding a slot) and "<a.prefix>held:<group>" (a list: the ids waiting
-- for one, oldest first). The script's KEYS[1] maps each id holding a slot to its group,
-- KEYS[2] is the set of groups that hold jobs back.
--
-- conc_live(id): the job still needs its slot (queued or running).
-- conc_heal(group): a slot whose job ended (or expired) without giving it back is freed.
-- conc_fill(group, limit, out): free slots go to held ids, oldest first (those no
--   longer queued, or holding a slot already, are dropped); each appends its id, kind
--   and tenant to `out`. At most a.look ids are looked at.
--   a.prefix      the prefix of the groups' keys (shared.keys.CONC_PREFIX)
--   a.job_prefix  the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.queued      the name of the queued state
--   a.running     the name of the running state
--   a.look        held ids looked at per group and call, at most
local function conc_live(id)
  local s = redis.call('HGET', a.job_prefix .. id, 'state')
  return s == a.queued or s == a.running
end

local function conc_heal(group)
  local taken = a.prefix .. 'taken:' .. group
  for _, id in ipairs(redis.call('SMEMBERS', taken)) do
    if not conc_live(id) then
      redis.call('SREM', taken, id)
      redis.call('HDEL', KEYS[1], id)
    end
  end
end

local function conc_fill(group, limit, out)
  local taken, held = a.prefix .. 'taken:' .. group, a.prefix .. 'held:' .. group
  local looked = 0
  while redis.call('SCARD', taken) < limit and looked < a.look do
    local id = redis.call('LPOP', held)
    if not id then break end
    looked = looked + 1
    local f = redis.call('HMGET', a.job_prefix .. id, 'state', 'kind', 'tenant')
    if f[1] == a.queued and redis.call('HEXISTS', KEYS[1], id) == 0 then
      redis.call('SADD', taken, id)
      redis.call('HSET', KEYS[1], id, group)
      redis.call('HDEL', a.job_prefix .. id, 'held_by')
      out[#out + 1] = id
      out[#out + 1] = f[2] or ''
      out[#out + 1] = f[3] or ''
    end
  end
  if redis.call('LLEN', held) == 0 then redis.call('SREM', KEYS[2], group) end
end
