-- Circuit breaker transition (release); see gateway/breaker.py for the hash layout.
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'probe_token') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'probe_token', 'probe_until_ms')
  return {'released', 0, 0}
end
return {'ignored', 0, 0}
