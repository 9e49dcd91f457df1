-- lib/after.lua: a job waiting for others (``after``) learns that one of them ended.
-- Included (a line "--! include after", after "--! include transition") by
-- after_wait and after_done.
--
-- settle(a, id, dep, dep_state) -> outcome, batch_done
--   id         the waiting job's id
--   dep        the id of the job it waits for that ended (or is gone)
--   dep_state  that job's state (false or nil: it no longer exists)
-- Reads these fields of a (and those lib/transition.lua reads):
--   a.job_prefix  the prefix of job hashes (shared.keys.JOB_KEY_PREFIX)
--   a.waiting     the name of the waiting state
--   a.queued      the name of the queued state
--   a.cancelled   the name of the cancelled state
--   a.succeeded   the name of the succeeded state
--   a.gone_text   the message's words for a job that no longer exists
--   a.ended_text  {state: the message's words for a job that ended so}
--   a.run_text    what the message adds when the job runs anyway (after_failure=run)
--   a.now         now, epoch seconds as text
--
-- A job no longer waiting changes nothing ('gone'). A succeeded dependency (or,
-- for a job whose hash says after_failure=run, any ended one) leaves its
-- waiting_for list (ids separated by spaces; one that did not succeed is named in
-- the message); the last one to leave moves it to queued ('ready'); else it still
-- waits ('still'). A dependency that failed,
-- was cancelled or is gone cancels it, with a message naming that job
-- ('called_off'). A change of state is a transition (lib/transition.lua).
local function settle(a, id, dep, dep_state)
  local k = a.job_prefix .. id
  local cur = redis.call('HMGET', k, 'state', 'waiting_for', 'after_failure', 'created_at',
                         'batch_id')
  if cur[1] ~= a.waiting then return 'gone', 0 end
  local fine = dep_state == a.succeeded
  local why = (dep_state and a.ended_text[dep_state] or a.gone_text)
  if not fine and cur[3] ~= 'run' then
    redis.call('HSET', k, 'state', a.cancelled, 'message', 'job ' .. dep .. ' ' .. why,
               'updated_at', a.now, 'finished_at', a.now)
    return 'called_off', transition(a, k, id, a.waiting, a.cancelled, cur[4], cur[5])
  end
  if not fine then
    redis.call('HSET', k, 'message', 'job ' .. dep .. ' ' .. why .. a.run_text)
  end
  local rest = {}
  for other in string.gmatch(cur[2] or '', '%S+') do
    if other ~= dep then rest[#rest + 1] = other end
  end
  if #rest > 0 then
    redis.call('HSET', k, 'waiting_for', table.concat(rest, ' '), 'updated_at', a.now)
    return 'still', 0
  end
  redis.call('HSET', k, 'state', a.queued, 'waiting_for', '', 'updated_at', a.now)
  return 'ready', transition(a, k, id, a.waiting, a.queued, cur[4], cur[5])
end
