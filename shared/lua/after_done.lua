-- after_done.lua: a job ended; the jobs waiting for it learn it (shared.after.Waits.ended).
--
-- KEYS[1]   the ended job's waiters set (shared.keys.job_waiters_key)
-- ARGV[1]   one JSON object, the fields below:
--   a.id              the ended job's id
--   a.state           its state (a terminal one)
--   a.job_prefix      the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
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
-- Each id in the set settles (lib/after.lua), then the set is deleted: the
-- change that ended the job is stored before this runs, so a job that starts
-- waiting later sees it ended (after_wait.lua).
--
-- Returns a flat list: id, outcome, batch_done for each waiting job that changed
-- (outcomes 'still', 'ready', 'called_off'; 'gone' ones are left out).
local a = cjson.decode(ARGV[1])
local waiters = KEYS[1]
--! include transition
--! include after

local changed = {}
for _, id in ipairs(redis.call('SMEMBERS', waiters)) do
  local outcome, done = settle(a, id, a.id, a.state)
  if outcome ~= 'gone' then
    changed[#changed + 1] = id; changed[#changed + 1] = outcome; changed[#changed + 1] = done
  end
end
redis.call('DEL', waiters)
return changed
