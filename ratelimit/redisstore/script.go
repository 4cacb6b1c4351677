package redisstore

import "github.com/redis/go-redis/v9"

// bucketScript is ratelimit's GCRA (ratelimit/bucket.go, type gcra) in Lua,
// so that one call changes the shared bucket atomically. Times are
// microseconds of the Redis server's clock, so that replicas whose clocks
// differ still agree. Values are stored with %d: Lua's default number
// format would round them.
//
// KEYS[1] is the bucket hash (tat, gen, paused); ARGV is the operation,
// the token interval in µs, the burst, then the operation's arguments.
// Every operation returns {ok, µs, gen}.
var bucketScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op, every, burst = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'tat', 'gen', 'paused')
local tat = tonumber(s[1]) or now
local gen = tonumber(s[2]) or 0
local paused = tonumber(s[3]) or 0

local function save()
	redis.call('HSET', KEYS[1], 'tat', string.format('%d', tat), 'gen', string.format('%d', gen),
		'paused', string.format('%d', paused))
	-- Once full and unpaused, the bucket equals a missing one; a minute
	-- more lets callers in line see the generation.
	local keep = math.max(tat, paused, now) - now
	redis.call('PEXPIRE', KEYS[1], math.floor(keep / 1000) + 60000)
end

if op == 'reserve' then
	local nxt = math.max(tat, now) + every
	local wait = math.max(nxt - burst * every - now, 0)
	if wait > tonumber(ARGV[4]) then
		return {0, wait, gen}
	end
	tat = nxt
	save()
	return {1, wait, gen}
elseif op == 'cancel' then
	if tonumber(ARGV[4]) == gen then
		tat = math.max(tat - every, now)
		save()
	end
elseif op == 'pause' then
	local untl = now + tonumber(ARGV[4])
	if untl > paused then
		paused = untl
		tat = untl + (burst - 1) * every
		gen = gen + 1
		save()
	end
elseif op == 'sync' then
	local full = tonumber(ARGV[5])
	if full > burst * every then
		full = 0
	end
	local low = now + math.max((burst - tonumber(ARGV[4])) * every, full)
	if low > tat then
		tat = low
		save()
	end
elseif op == 'tokens' then
	return {1, burst * every - math.max(tat - now, 0), gen}
elseif op ~= 'gen' then
	return redis.error_reply('unknown operation ' .. tostring(op))
end
return {1, 0, gen}
`)

// forgetScript deletes KEYS[1] if it holds ARGV[1].
var forgetScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)
