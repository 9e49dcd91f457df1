-- after_wait.lua: a new job in state waiting starts waiting for the jobs it was
-- started after (shared.after.Waits.register), atomically.
--
-- KEYS[1]   the waiting job's hash (shared.keys.job_key)
-- ARGV[1]   one JSON object, the fields below:
--   a.id              the waiting job's id
--   a.after           the ids it waits for, in order
--   a.job_prefix      the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.waiters_suffix  the suffix of a job's waiters set (shared.keys.WAITERS_SUFFIX)
--   a.ttl             seconds a waiters set lives (the job TTL)
--   a.now             now, epoch seconds as text
--   a.waiting         the name of the waiting state (for lib/after.lua)
--   a.queued          the name of the queued state (for lib/after.lua)
--   a.cancelled       the name of the cancelled state (for lib/after.lua)
--   a.succeeded       the name of the succeeded state (for lib/after.lua)
--   a.gone_text       the message's words for a job that is gone (for lib/after.lua)
--   a.ended_text      {state: the words for a job that ended so} (for lib/after.lua)
--   a.run_text        the words for a job that runs anyway (for lib/after.lua)
--   a.terminal        the terminal states, a set {name: true}
--   a.state_index     the prefix of the state indexes (for lib/transition.lua)
--   a.timeline        the suffix of a job's timeline key (for lib/transition.lua)
--   a.timeline_max    how many entries a timeline keeps (for lib/transition.lua)
--   a.batch_prefix    the prefix of batch hashes (for lib/transition.lua)
--   a.running         the name of the running state (for lib/transition.lua)
--   a.stall_deadlines  the stall deadlines (for lib/transition.lua)
--   a.stalled_index    the stalled jobs' index (for lib/transition.lua)
--   a.history       the history's buckets, a job's end counts in them (for lib/transition.lua)
--
-- Each job it waits for that has ended already (or is gone) settles it at once
-- (lib/after.lua); each other one gets its id in its waiters set, which the
-- change that ends it reads (after_done.lua). Both read and write in one script
-- run: a job that ends meanwhile is either seen ended here or finds the id in
-- its set, never neither.
--
-- Returns {outcome, batch_done}: 'still', 'ready', 'called_off' or 'gone'
-- (lib/after.lua), and 1 when a cancel completed the job's batch.
local a = cjson.decode(ARGV[1])
local k = KEYS[1]
--! include transition
--! include after

local outcome, done = 'still', 0
for _, dep in ipairs(a.after) do
  local state = redis.call('HGET', a.job_prefix .. dep, 'state')
  if not state or a.terminal[state] then
    outcome, done = settle(a, a.id, dep, state)
    if outcome ~= 'still' then return {outcome, done} end
  else
    local waiters = a.job_prefix .. dep .. a.waiters_suffix
    redis.call('SADD', waiters, a.id)
    redis.call('EXPIRE', waiters, a.ttl)
  end
end
if redis.call('HGET', k, 'state') ~= a.waiting then outcome = 'gone' end
return {outcome, done}
