-- Circuit breaker transition (success); see gateway/breaker.py for the hash layout.
local h = redis.call('HMGET', KEYS[1], 'state', 'probe_token')
if h[1] == 'open' then
  if ARGV[1] == '' or h[2] ~= ARGV[1] then return {'ignored', 0, 0} end
  redis.call('DEL', KEYS[1])
  return {'closed', 0, 0}
end
redis.call('DEL', KEYS[1])
return {'reset', 0, 0}
