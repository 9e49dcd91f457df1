-- unique_release.lua: an ended job gives up its unique key (shared.unique.UniqueKeys.release).
--
-- KEYS[1]   the job's hash (shared.keys.job_key)
-- ARGV[1]   one JSON object, the fields below:
--   a.id      the job's id
--
-- The key is the hash's unique_key field; it is deleted only while it still holds
-- a.id (a later job of the same key may hold it now).
--
-- Returns 1 when the key was deleted, else 0.
local a = cjson.decode(ARGV[1])
local key = redis.call('HGET', KEYS[1], 'unique_key')
if key and key ~= '' and redis.call('GET', key) == a.id then
  redis.call('DEL', key)
  return 1
end
return 0
