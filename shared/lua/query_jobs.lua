-- query_jobs.lua: one page of the jobs in every given index, newest first.
--
-- KEYS[1] .. KEYS[n]  the indexes to intersect (sorted sets of job ids scored by creation
--           time); the smallest is walked, the others are checked by ZSCORE
-- ARGV[1]   one JSON object, the fields below (shared.jobquery.JobQuery):
--   a.score       walk from this score down, as text ('+inf' from the newest)
--   a.after       ... skipping, at exactly that score, ids >= this one ('' none):
--                 ZREVRANGEBYSCORE lists equal scores in reverse id order
--   a.limit       how many ids to return at most (0: count only)
--   a.budget      how many index entries to examine at most (the scan bound)
--   a.q           text the job's message must contain, lower case ('' for any)
--   a.job_prefix  the job hash key prefix (shared.keys.job_key without the id)
--
-- Expired jobs (no hash) are skipped. Returns field/value pairs:
--   ids    the matching ids, newest first (empty when counting)
--   found  how many matched
--   score, id   where the walk stopped (the next cursor)
--   done   1 when the walk reached the end of the index
local a = cjson.decode(ARGV[1])
local chunk = 200
-- Byte order, as Redis sorts equal scores (Lua's < follows the server's locale).
local function at_or_after(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a >= #b
end
local max_s, after, limit = a.score, a.after, a.limit
local budget, q, job_prefix = a.budget, a.q, a.job_prefix
local driver, others, smallest = nil, {}, nil
for _, key in ipairs(KEYS) do
  local n = redis.call('ZCARD', key)
  if smallest == nil or n < smallest then driver, smallest = key, n end
end
for _, key in ipairs(KEYS) do
  if key ~= driver then others[#others + 1] = key end
end
local ids, found, scanned, off = {}, 0, 0, 0
local last_s, last_id, done = max_s, after, 0
local max_n = tonumber(max_s)
while true do
  local batch = redis.call('ZREVRANGEBYSCORE', driver, max_s, '-inf', 'WITHSCORES',
                           'LIMIT', off, chunk)
  local n = #batch / 2
  for i = 1, #batch, 2 do
    local id, s = batch[i], batch[i + 1]
    local sn = tonumber(s)
    if not (sn == max_n and after ~= '' and at_or_after(id, after)) then
      scanned = scanned + 1
      last_s, last_id = s, id
      local ok = true
      for _, key in ipairs(others) do
        if not redis.call('ZSCORE', key, id) then ok = false; break end
      end
      if ok then
        if q == '' then
          ok = redis.call('EXISTS', job_prefix .. id) == 1
        else
          local msg = redis.call('HGET', job_prefix .. id, 'message')
          ok = msg and string.find(string.lower(msg), q, 1, true) ~= nil
        end
      end
      if ok then
        found = found + 1
        if limit > 0 then ids[#ids + 1] = id end
      end
      if (limit > 0 and found >= limit) or scanned >= budget then
        return {'ids', ids, 'found', found, 'score', last_s, 'id', last_id, 'done', 0}
      end
    end
  end
  if n < chunk then done = 1; break end
  -- Continue below the chunk's last score; the ids already passed at that
  -- score are skipped by offset (ties of the creation time are rare).
  local tail_s = batch[#batch]
  local tail_n = tonumber(tail_s)
  local at_tail = 0
  for i = 2, #batch, 2 do
    if tonumber(batch[i]) == tail_n then at_tail = at_tail + 1 end
  end
  if tail_n == max_n then
    off = off + at_tail  -- still at the starting score: the id rule keeps skipping
  else
    off, after = at_tail, ''
  end
  max_s, max_n = tail_s, tail_n
end
return {'ids', ids, 'found', found, 'score', last_s, 'id', last_id, 'done', done}
