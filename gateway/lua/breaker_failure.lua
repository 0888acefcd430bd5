-- Circuit breaker transition (failure); see gateway/breaker.py for the hash layout.
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'state', 'timeout_ms', 'probe_token')
if h[1] == 'open' then
  if ARGV[2] == '' or h[3] ~= ARGV[2] then return {'ignored', 0, 0} end
  local timeout = math.min(tonumber(h[2]) * 2, tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'open_until_ms', now + timeout, 'timeout_ms', timeout)
  redis.call('HDEL', KEYS[1], 'probe_token', 'probe_until_ms')
  return {'reopened', now + timeout, timeout}
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures < tonumber(ARGV[3]) then return {'counted', 0, failures} end
local timeout = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'state', 'open', 'open_until_ms', now + timeout, 'timeout_ms', timeout)
return {'opened', now + timeout, timeout}
