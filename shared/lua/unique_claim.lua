-- unique_claim.lua: take a unique key for a new job, or answer the job that holds it
-- (shared.unique.UniqueKeys.claim), atomically.
--
-- KEYS[1]   the unique key (shared.keys.UNIQUE_PREFIX, the kind, the values' digest)
-- ARGV[1]   one JSON object, the fields below:
--   a.id          the new job's id
--   a.job_prefix  the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.terminal    the terminal states, a set {name: true}
--   a.ttl         seconds the key lives at most (the job TTL)
--   a.grace       seconds a holder may take to be stored after taking the key
--
-- The key holds the id of a job not yet ended (the key is taken before the job
-- is stored: a holder not stored yet holds it for a.grace seconds). A holder
-- that has ended or is gone (its release was missed) gives the key up here.
--
-- Returns the id holding the key now: a.id when this run took it.
local a = cjson.decode(ARGV[1])
local key = KEYS[1]
local holder = redis.call('GET', key)
if holder then
  local state = redis.call('HGET', a.job_prefix .. holder, 'state')
  if state and not a.terminal[state] then return holder end
  if not state and redis.call('TTL', key) > a.ttl - a.grace then return holder end
end
redis.call('SET', key, a.id, 'EX', a.ttl)
return a.id
