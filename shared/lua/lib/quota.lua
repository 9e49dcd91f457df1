-- lib/quota.lua: count what a record's owners store against their quotas, as it is
-- stored. Included (a line "--! include quota", shared/scripts.py) by update_job
-- (log lines and results), set_highlighted (a snippet's HTML) and quota_count (a
-- job's files); shared/quotas.py describes the counters.
--
-- quota_add(a, tenants, resource, amount, expires_at): add `amount` (may be negative)
-- to the counter of `resource` of each tenant in `tenants` (a list; nil, '' and the
-- exempt ones are skipped), in the bucket of the moment the stored thing expires
-- (`expires_at`, epoch seconds): field floor(expires_at / a.quota_bucket) of the hash
-- a.quota_prefix .. tenant .. ':' .. resource. The hash expires with its newest
-- bucket. Nothing here refuses: what a worker stores is counted, and the owner's
-- next start is refused (quota_take.lua).
-- Reads these fields of a:
--   a.now           now, epoch seconds as text
--   a.quota_prefix  the prefix of the counters (shared.quotas.QUOTA_PREFIX)
--   a.quota_bucket  the width of a bucket, seconds (shared.quotas.BUCKET_SECONDS)
--   a.quota_exempt  the tenants never counted, a set {name: true} ('ops')
--
-- quota_expiry(a, k): when the key k expires, epoch seconds (now + a day when it
-- has no expiry; nil when it does not exist).
local function quota_add(a, tenants, resource, amount, expires_at)
  if amount == 0 then return end
  local field = string.format('%d', math.floor(expires_at / a.quota_bucket))
  local ends = (math.floor(expires_at / a.quota_bucket) + 1) * a.quota_bucket
  for _, tenant in ipairs(tenants) do
    if tenant and tenant ~= '' and not a.quota_exempt[tenant] then
      local key = a.quota_prefix .. tenant .. ':' .. resource
      local total = redis.call('HINCRBY', key, field, amount)
      if total <= 0 then redis.call('HDEL', key, field) end
      local ttl = redis.call('TTL', key)
      if ttl == -1 or (ttl >= 0 and tonumber(a.now) + ttl < ends) then
        redis.call('EXPIREAT', key, string.format('%d', ends))
      end
    end
  end
end

local function quota_expiry(a, k)
  local pttl = redis.call('PTTL', k)
  if pttl == -2 then return nil end
  if pttl < 0 then return tonumber(a.now) + 86400 end
  return tonumber(a.now) + pttl / 1000
end
