-- quota_take.lua: check an owner's quotas and batch rate, and take what a start
-- stores, atomically: all or nothing (shared/quotas.py describes the counters).
--
-- KEYS[1]..KEYS[n]  the counters checked, hashes {bucket: amount} (shared.quotas.counter_key),
--                n = #a.counters, in the order of a.counters
-- KEYS[n+1]..    the batch-rate keys, one per entry of a.rates (shared.quotas.rate_key):
--                a string, the moment (epoch seconds) until which the owner's batch
--                items are paid for
-- ARGV[1]   one JSON object, the fields below (shared.quotas.Quotas.take):
--   a.now        now, epoch seconds (a number)
--   a.bucket     the width of a bucket, seconds
--   a.counters   a list, one per counter key: {limit (0: none), amount (what this
--                start adds in all), adds: [{field, amount}] (the buckets it adds to)}
--   a.rates      a list, one per rate key: {cost (seconds this batch's items are
--                worth), tolerance (seconds that may be owed at most)}
--
-- A bucket counts while its end ((field + 1) * a.bucket) is ahead; ended buckets
-- are deleted here. A counter refuses when its limit is set and what it counts
-- plus the amount is over it. A rate refuses when something is owed and what is
-- owed plus the cost is over the tolerance (so a batch bigger than the tolerance
-- goes once nothing is owed); taking it moves the paid-until moment by the cost.
--
-- Returns field/value pairs:
--   code 1                           taken
--   code 0, index, used, retry       counter `index` (1-based) is full; `retry`: seconds
--                                    until enough of it has expired for this start
--   code -1, index, used             counter `index`: the amount alone is over its limit
--   code 2, index, retry             rate `index` (1-based in a.rates): try in `retry` s
local a = cjson.decode(ARGV[1])
local now, width = a.now, a.bucket
local n = #a.counters

for i, counter in ipairs(a.counters) do
  local raw = redis.call('HGETALL', KEYS[i])
  local used, live, ended = 0, {}, {}
  for j = 1, #raw, 2 do
    local field, amount = tonumber(raw[j]), tonumber(raw[j + 1]) or 0
    if field and (field + 1) * width > now then
      used = used + amount
      live[#live + 1] = {field, amount}
    else
      ended[#ended + 1] = raw[j]
    end
  end
  if #ended > 0 then redis.call('HDEL', KEYS[i], unpack(ended)) end
  local limit = counter.limit
  if limit > 0 and used + counter.amount > limit then
    if counter.amount > limit then return {'code', -1, 'index', i, 'used', used} end
    table.sort(live, function(x, y) return x[1] < y[1] end)
    local left = used
    for _, bucket in ipairs(live) do
      left = left - bucket[2]
      if left + counter.amount <= limit then
        return {'code', 0, 'index', i, 'used', used,
                'retry', math.ceil((bucket[1] + 1) * width - now)}
      end
    end
    return {'code', 0, 'index', i, 'used', used, 'retry', width}
  end
end

local owed = {}
for j, rate in ipairs(a.rates) do
  local paid = tonumber(redis.call('GET', KEYS[n + j])) or now
  if paid < now then paid = now end
  local due = paid - now
  if due > 0 and due + rate.cost > rate.tolerance then
    local retry = due
    if rate.cost < rate.tolerance then retry = due + rate.cost - rate.tolerance end
    return {'code', 2, 'index', j, 'retry', math.max(1, math.ceil(retry))}
  end
  owed[j] = paid + rate.cost
end

for i, counter in ipairs(a.counters) do
  local ends = 0
  for _, add in ipairs(counter.adds) do
    redis.call('HINCRBY', KEYS[i], add.field, add.amount)
    local bucket_end = (tonumber(add.field) + 1) * width
    if bucket_end > ends then ends = bucket_end end
  end
  local ttl = redis.call('TTL', KEYS[i])
  if ends > 0 and (ttl < 0 or now + ttl < ends) then
    redis.call('EXPIREAT', KEYS[i], string.format('%d', math.ceil(ends)))
  end
end
for j, _ in ipairs(a.rates) do
  redis.call('SET', KEYS[n + j], string.format('%.3f', owed[j]),
             'PX', math.ceil((owed[j] - now) * 1000) + 1000)
end
return {'code', 1}
