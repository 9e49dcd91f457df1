-- lib/lease.lua: renew or drop the lease of a claimed external job. Included (a
-- line "--! include lease", shared/scripts.py) by renew_lease (a heartbeat) and
-- update_job (a report renews the lease in the same run).
--
-- keep_lease(leases, id, ended, deadline): a job that has ended loses its lease
-- (ZREM); any other's deadline moves to `deadline` (epoch seconds as text) if it
-- holds a lease (ZADD XX: a job without one does not get one).
--   leases    the lease deadlines, a sorted set (shared.keys.EXTERNAL_LEASES)
-- Reads no field of the script's JSON argument.
local function keep_lease(leases, id, ended, deadline)
  if ended then
    redis.call('ZREM', leases, id)
  else
    redis.call('ZADD', leases, 'XX', deadline, id)
  end
end
