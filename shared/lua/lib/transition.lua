-- lib/transition.lua: a job moved from one state to another. Included (a line
-- "--! include transition", shared/scripts.py) by every script that changes a
-- job's state: update_job, claim_external, sweep_leases, reset_job, queue_retry,
-- after_wait, after_done.
--
-- transition(a, k, id, from, to, created, batch) -> 1 when this change completed the
-- job's batch (it made the batch's last child final, the first time), else 0.
--   a         the script's JSON argument (the fields below)
--   k, id     the job's hash key and id
--   from, to  the state it left and the state it entered
--   created   the job's created_at (its score in the index; now when missing)
--   batch     the job's batch_id (nil or false for none)
-- Reads these fields of a:
--   a.now           now, epoch seconds as text (the timeline entry, completed_at)
--   a.state_index   the prefix of the state indexes (shared.keys.state_index(''))
--   a.timeline      the suffix of a job's timeline key (shared.keys.job_timeline_key)
--   a.timeline_max  how many entries a timeline keeps (shared.store.TIMELINE_MAX)
--   a.batch_prefix  the prefix of batch hashes (shared.keys.BATCH_PREFIX)
--   a.terminal      the terminal states, a set {name: true}
--   a.running       the name of the running state
--   a.stall_deadlines  when each running job becomes stalled (shared.keys.STALL_DEADLINES)
--   a.stalled_index    the stalled jobs, scored by creation time (shared.keys.STALLED_INDEX)
--
-- The id moves from <state_index><from> to <state_index><to>, scored by its
-- creation time, so the indexes never disagree with the hash; "<to> <now>" is
-- appended to the timeline (k .. a.timeline: trimmed to the newest
-- timeline_max, expiring with the hash). A child of a batch moves one from
-- `from` to `to` in the batch's totals; `done` goes up when it ends (down when
-- a retry takes it back), and the change that makes `done` reach `total`
-- marks the batch completed (HSETNX completed_at), once.
-- Stalls (shared/watch.py): a job that starts running gets a stall deadline (now +
-- its stored stall_after; none without one); one that stops running loses it, and
-- is no longer stalled.
local function transition(a, k, id, from, to, created, batch)
  local now = a.now
  redis.call('ZREM', a.state_index .. from, id)
  redis.call('ZADD', a.state_index .. to, tonumber(created) or tonumber(now), id)
  local timeline = k .. a.timeline
  redis.call('RPUSH', timeline, to .. ' ' .. now)
  redis.call('LTRIM', timeline, -a.timeline_max, -1)
  local pttl = redis.call('PTTL', k)
  if pttl > 0 then redis.call('PEXPIRE', timeline, pttl) end
  if to == a.running and from ~= a.running then
    local stall = tonumber(redis.call('HGET', k, 'stall_after'))
    if stall then redis.call('ZADD', a.stall_deadlines, tonumber(now) + stall, id) end
  elseif from == a.running and to ~= a.running then
    redis.call('ZREM', a.stall_deadlines, id)
    if redis.call('ZREM', a.stalled_index, id) == 1 then redis.call('HDEL', k, 'stalled') end
  end
  if not batch then return 0 end
  local bk = a.batch_prefix .. batch
  if redis.call('EXISTS', bk) == 0 then return 0 end
  redis.call('HINCRBY', bk, from, -1)
  redis.call('HINCRBY', bk, to, 1)
  local ends, ended = a.terminal[to], a.terminal[from]
  if ends and not ended then
    local done = redis.call('HINCRBY', bk, 'done', 1)
    if done == tonumber(redis.call('HGET', bk, 'total'))
       and redis.call('HSETNX', bk, 'completed_at', now) == 1 then
      return 1
    end
  elseif ended and not ends then
    redis.call('HINCRBY', bk, 'done', -1)  -- a retried child is not done any more
  end
  return 0
end
