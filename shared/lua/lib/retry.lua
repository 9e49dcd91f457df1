-- lib/retry.lua: a failed attempt of a job whose kind retries waits, scheduled, for the
-- next one (the kind's retries and backoff, shared/kinds/policy.py). Included (a line
-- "--! include retry") by update_job (a failed report) and sweep_leases (a lapsed
-- lease of a job whose kind retries).
--
-- retry_delay(a, k, attempt, jitter) -> seconds before the next attempt, or nil when
-- the job gets none: its hash names no max_attempts (its kind declares no retries), or
-- `attempt` was its last. The hash's backoff is a JSON list of seconds (the n-th failed
-- attempt waits the n-th, the last repeating) or a.exponential: 1, 2, 4… s, capped at
-- a.backoff_cap, times `jitter` (a number from 0 to 1: full jitter).
--
-- retry_later(a, k, attempt, delay, error) -> the retry time (epoch seconds, as text):
-- the job becomes a.scheduled for attempt + 1 (a report of the failed attempt is refused
-- from now on by its attempt number), at now + delay (retry_at); the failed attempt's
-- error joins the hash's failures (a JSON list of {attempt, error, endedAt}, the newest
-- a.failures_max kept); its run (started_at, seq, result, "n of total", worker) is
-- forgotten. The caller makes the transition (lib/transition.lua) from the state it left.
-- Reads these fields of a:
--   a.now           now, epoch seconds as text
--   a.scheduled     the name of the scheduled state
--   a.exponential   the backoff that doubles ('exponential')
--   a.backoff_cap   the longest exponential wait, seconds
--   a.failures_max  how many earlier attempts' errors a job keeps
local function retry_delay(a, k, attempt, jitter)
  local spec = redis.call('HMGET', k, 'max_attempts', 'backoff')
  local most = tonumber(spec[1])
  if not most or attempt >= most then return nil end
  if spec[2] == a.exponential then
    return math.min(a.backoff_cap, 2 ^ (attempt - 1)) * jitter
  end
  local ok, steps = pcall(cjson.decode, spec[2] or '')
  if not ok or type(steps) ~= 'table' or #steps == 0 then return 0 end
  return tonumber(steps[math.min(attempt, #steps)]) or 0
end

local function retry_later(a, k, attempt, delay, error)
  local at = tostring(tonumber(a.now) + delay)
  local most = redis.call('HGET', k, 'max_attempts') or ''
  local ok, failures = pcall(cjson.decode, redis.call('HGET', k, 'failures') or '[]')
  if not ok or type(failures) ~= 'table' then failures = {} end
  failures[#failures + 1] = {attempt = attempt, error = error, endedAt = a.now}
  while #failures > a.failures_max do table.remove(failures, 1) end
  redis.call('HSET', k, 'state', a.scheduled, 'attempt', attempt + 1, 'retry_at', at,
             'progress', 0, 'stage', '', 'updated_at', a.now, 'failures', cjson.encode(failures),
             'message', 'attempt ' .. attempt .. ' of ' .. most .. ' failed; retrying')
  redis.call('HDEL', k, 'started_at', 'finished_at', 'seq', 'seq_any', 'result', 'current',
             'total', 'worker')
  return at
end
