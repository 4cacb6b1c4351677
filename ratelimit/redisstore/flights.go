package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"khproxy/ratelimit"
)

var _ ratelimit.FlightStore = (*Store)(nil)

// The flight board: one hash per body fingerprint (KEYS[1]; KEYS[2] is the
// fingerprint's retry memory entry, in the same hash slot), a field per flight
// (its id), valued "key|owner|gone|claimed|expires" with expires in ms of
// the Redis server's clock, so that replicas whose clocks differ agree. The
// hash lives for the idempotency window after its last write: an entry
// whose owner stopped refreshing it (a crashed replica) stays claimable
// until then.
var flightScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local function parse(v)
	if not v then return nil end
	local k, o, g, c, e = string.match(v, '^([^|]*)|([^|]*)|(%d)|(%d)|(%d+)$')
	if not k then return nil end
	return {key = k, owner = o, gone = g, claimed = c, expires = tonumber(e)}
end
local function put(id, f)
	redis.call('HSET', KEYS[1], id, f.key .. '|' .. f.owner .. '|' .. f.gone .. '|' .. f.claimed .. '|' .. string.format('%d', f.expires))
end
local function keep(ms)
	if redis.call('PTTL', KEYS[1]) < ms then
		redis.call('PEXPIRE', KEYS[1], ms)
	end
end

if op == 'register' then
	-- id key owner gone ttl keep
	put(ARGV[2], {key = ARGV[3], owner = ARGV[4], gone = ARGV[5], claimed = '0', expires = now + tonumber(ARGV[6])})
	keep(tonumber(ARGV[7]))
	return {1}
elseif op == 'leave' or op == 'mark' or op == 'unclaim' then
	local f = parse(redis.call('HGET', KEYS[1], ARGV[2]))
	if not f then
		return {1}
	end
	if op == 'leave' then
		f.gone = '1'
	elseif op == 'unclaim' then
		f.claimed = '0'
	elseif f.claimed == '1' then
		return {0}
	else
		f.claimed = '1'
	end
	put(ARGV[2], f)
	return {1}
elseif op == 'finish' then
	-- id key keepFor; KEYS[2] is the retry memory's entry for the fingerprint
	local f = parse(redis.call('HGET', KEYS[1], ARGV[2]))
	redis.call('HDEL', KEYS[1], ARGV[2])
	if f and f.claimed == '1' then
		return {1}
	end
	if tonumber(ARGV[4]) > 0 then
		redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
	end
	return {0}
elseif op == 'claim' then
	-- owner
	local all = redis.call('HGETALL', KEYS[1])
	local busy = 0
	for i = 1, #all, 2 do
		local id, f = all[i], parse(all[i + 1])
		if f and f.owner ~= ARGV[2] then
			local dead = f.expires < now
			if f.claimed == '0' and (dead or f.gone == '1') then
				if dead then
					redis.call('HDEL', KEYS[1], id)
				else
					f.claimed = '1'
					put(id, f)
				end
				return {1, f.key}
			elseif dead then
				redis.call('HDEL', KEYS[1], id) -- claimed, and its owner is gone
			elseif f.claimed == '0' then
				busy = 1
			end
		end
	end
	return {0, busy}
end
return redis.error_reply('unknown operation ' .. tostring(op))
`)

// refreshScript extends the life of flights by ARGV[1] ms, each in its own
// hash (KEYS[i]; ARGV[2] is how long the hash is kept, then id, key, owner,
// gone for each). A flight missing from its hash, lost in a Redis restart,
// is put back unclaimed: its owner still runs it.
var refreshScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, #KEYS do
	local a = 2 + (i - 1) * 4
	local id, key, owner, gone = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
	local v = redis.call('HGET', KEYS[i], id)
	local claimed = '0'
	if v then
		local g, c = string.match(v, '^[^|]*|[^|]*|(%d)|(%d)|%d+$')
		if g then
			claimed = c
			if g == '1' then gone = '1' end
		end
	end
	redis.call('HSET', KEYS[i], id, key .. '|' .. owner .. '|' .. gone .. '|' .. claimed .. '|' .. string.format('%d', now + ttl))
	if redis.call('PTTL', KEYS[i]) < keep then
		redis.call('PEXPIRE', KEYS[i], keep)
	end
end
return #KEYS
`)

func (s *Store) flightKey(fp string) string { return s.ns + "flight:" + fp }

// flight runs one operation of the flight script on fp's hash.
func (s *Store) flight(ctx context.Context, fp, op string, args ...any) ([]any, error) {
	keys := []string{s.flightKey(fp), s.retry + fp}
	v, err := flightScript.Run(ctx, s.client, keys, append([]any{op}, args...)...).Slice()
	if err != nil {
		return nil, fmt.Errorf("redis flight %s: %w", op, err)
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("redis flight %s: empty answer", op)
	}
	return v, nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// RegisterFlight implements ratelimit.FlightStore.
func (s *Store) RegisterFlight(ctx context.Context, e ratelimit.FlightEntry, ttl, keep time.Duration) error {
	_, err := s.flight(ctx, e.FP, "register", e.ID, e.Key, e.Owner, flag(e.Gone), ttl.Milliseconds(), keep.Milliseconds())
	return err
}

// RefreshFlights implements ratelimit.FlightStore, in one call. An entry
// lost from Redis (a restart) is put back, unclaimed.
func (s *Store) RefreshFlights(ctx context.Context, es []ratelimit.FlightEntry, ttl, keep time.Duration) error {
	if len(es) == 0 {
		return nil
	}
	keys := make([]string, len(es))
	args := make([]any, 0, 2+4*len(es))
	args = append(args, ttl.Milliseconds(), keep.Milliseconds())
	for i, e := range es {
		keys[i] = s.flightKey(e.FP)
		args = append(args, e.ID, e.Key, e.Owner, flag(e.Gone))
	}
	if err := refreshScript.Run(ctx, s.client, keys, args...).Err(); err != nil {
		return fmt.Errorf("redis flight refresh: %w", err)
	}
	return nil
}

// LeaveFlight implements ratelimit.FlightStore.
func (s *Store) LeaveFlight(ctx context.Context, fp, id string) error {
	_, err := s.flight(ctx, fp, "leave", id)
	return err
}

// ClaimFlight implements ratelimit.FlightStore.
func (s *Store) ClaimFlight(ctx context.Context, fp, owner string) (string, bool, bool, error) {
	v, err := s.flight(ctx, fp, "claim", owner)
	if err != nil || len(v) < 2 {
		return "", false, false, err
	}
	if ok, _ := v[0].(int64); ok == 1 {
		key, _ := v[1].(string)
		return key, true, false, nil
	}
	busy, _ := v[1].(int64)
	return "", false, busy == 1, nil
}

// MarkFlightClaimed implements ratelimit.FlightStore.
func (s *Store) MarkFlightClaimed(ctx context.Context, fp, id string) (bool, error) {
	v, err := s.flight(ctx, fp, "mark", id)
	if err != nil {
		return false, err
	}
	ok, _ := v[0].(int64)
	return ok == 1, nil
}

// UnclaimFlight implements ratelimit.FlightStore.
func (s *Store) UnclaimFlight(ctx context.Context, fp, id string) error {
	_, err := s.flight(ctx, fp, "unclaim", id)
	return err
}

// FinishFlight implements ratelimit.FlightStore.
func (s *Store) FinishFlight(ctx context.Context, fp, id, key string, keepFor time.Duration) (bool, error) {
	v, err := s.flight(ctx, fp, "finish", id, key, keepFor.Milliseconds())
	if err != nil {
		return false, err
	}
	claimed, _ := v[0].(int64)
	return claimed == 1, nil
}
