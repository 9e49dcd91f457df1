-- quota_count.lua: count bytes a worker stored for a job (a file it saved) against the
-- job's owners, as they are stored: nothing is refused here, the owners' next start is.
--
-- KEYS[1]   the job's hash (shared.keys.job_key): its fields `tenant` and
--           `tenant_address` name who pays (shared/quotas.py)
-- ARGV[1]   one JSON object, the fields below (shared.quotas.count_for_job):
--   a.amount        the bytes stored
--   a.resource      the counter ('bytes')
--   a.now           now, epoch seconds as text
--   a.quota_prefix  the prefix of the quota counters (for lib/quota.lua)
--   a.quota_bucket  the width of a quota bucket, seconds (for lib/quota.lua)
--   a.quota_exempt  the tenants never counted, a set {name: true} (for lib/quota.lua)
--
-- The bytes count in the bucket of the job's own expiry (they go with it).
-- Returns 1 when counted, 0 when the job is gone or has no owner to count.
local a = cjson.decode(ARGV[1])
--! include quota

local expires_at = quota_expiry(a, KEYS[1])
if not expires_at then return 0 end
local who = redis.call('HMGET', KEYS[1], 'tenant', 'tenant_address')
if not who[1] then return 0 end
quota_add(a, {who[1], who[2]}, a.resource, a.amount, expires_at)
return 1
