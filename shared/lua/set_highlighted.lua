-- set_highlighted.lua: store a snippet's highlighted HTML, unless the snippet expired,
-- and count its real size against the snippet's owners.
--
-- KEYS[1]  the snippet's hash (shared.kinds.highlight.snippets.snippet_key)
-- ARGV[1]  one JSON object, the fields below (shared.kinds.highlight.snippets.SnippetStore.set_highlighted):
--   a.html    the highlighted HTML
--   a.now     now, epoch seconds as text
--   a.lexer   the name of the Pygments lexer used
--   a.quota_prefix  the prefix of the quota counters (for lib/quota.lua)
--   a.quota_bucket  the width of a quota bucket, seconds (for lib/quota.lua)
--   a.quota_exempt  the tenants never counted, a set {name: true} (for lib/quota.lua)
--
-- The HTML's bytes (by how much they grow what the snippet held) count against
-- the owners the snippet names (its `tenant` and `tenant_address` fields), in
-- the bucket of the snippet's expiry (lib/quota.lua): nothing is refused here,
-- the owner's next start is.
-- Returns 1 when stored, 0 when the snippet is gone.
local a = cjson.decode(ARGV[1])
--! include quota

local k = KEYS[1]
local expires_at = quota_expiry(a, k)
if not expires_at then return 0 end
local who = redis.call('HMGET', k, 'tenant', 'tenant_address')
if who[1] and who[1] ~= '' then
  local grown = #a.html - redis.call('HSTRLEN', k, 'highlighted_html')
  if grown > 0 then quota_add(a, {who[1], who[2]}, 'bytes', grown, expires_at) end
end
redis.call('HSET', k, 'highlighted_html', a.html, 'highlighted_at', a.now,
           'lexer', a.lexer)
return 1
