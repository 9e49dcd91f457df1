-- drop_upload.lua: delete a job's uploads and give their bytes back to its owners.
--
-- KEYS[1]   the job's uploads, a hash (shared.keys.job_upload_key): `arg:<name>` (the
--           text of each upload) and, when its bytes were counted, `tenant`,
--           `tenant_address`, `field` (the bucket they were counted in) and `bytes`
-- ARGV[1]   one JSON object, the fields below (shared.uploads.UploadStore.drop):
--   a.resource       the counter the bytes were counted in ('bytes')
--   a.quota_prefix   the prefix of the counters (shared.quotas.QUOTA_PREFIX)
--
-- The bytes come off the very bucket they were counted in, if it is still there
-- (never below zero: an emptied bucket is deleted).
-- Returns the bytes given back (0 when there was nothing to delete).
local a = cjson.decode(ARGV[1])
local k = KEYS[1]
local got = redis.call('HMGET', k, 'tenant', 'tenant_address', 'field', 'bytes')
if redis.call('DEL', k) == 0 then return 0 end
local field, bytes = got[3], tonumber(got[4]) or 0
if not field or bytes <= 0 then return 0 end
for _, tenant in ipairs({got[1], got[2]}) do
  if tenant and tenant ~= '' then
    local key = a.quota_prefix .. tenant .. ':' .. a.resource
    if redis.call('HEXISTS', key, field) == 1 then
      if redis.call('HINCRBY', key, field, -bytes) <= 0 then redis.call('HDEL', key, field) end
    end
  end
end
return bytes
