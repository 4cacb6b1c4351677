package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"khproxy/guard"
)

// GuardStore is the guard's order and spend counters (a guard.Store) in
// Redis, so that replicas using one API key enforce one order and spend
// limit. Create it with Store.Guard; it is safe for concurrent use.
//
// An order is a member of a sorted set scored by the time it was counted
// (ms of the guard's clock: replicas' clocks must agree to within the
// precision the limits need), with its cost in a hash beside it; both
// share the API key's hash tag. Every operation is one script, atomic.
type GuardStore struct {
	client redis.UniversalClient
	keys   []string // the sorted set and the hash
}

var _ guard.Store = (*GuardStore)(nil)

// Guard returns the API key's guard counters.
func (s *Store) Guard() *GuardStore {
	return &GuardStore{client: s.client, keys: []string{s.ns + "guard:orders", s.ns + "guard:cost"}}
}

// guardScript counts orders. KEYS: the sorted set (key -> ms), the hash
// (key -> hundredths). ARGV: op, now ms, order key, price, max orders,
// order period ms, max spend, spend period ms, keep ms. It returns
// {known, refused (0, 1 orders, 2 spend, 3 unpriced), retry-after ms,
// orders, spent}.
var guardScript = redis.NewScript(`
local op, now, key, price = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local maxOrders, orderPer = tonumber(ARGV[5]), tonumber(ARGV[6])
local maxSpend, spendPer = tonumber(ARGV[7]), tonumber(ARGV[8])
local keep = tonumber(ARGV[9])
local function fmt(n) return string.format('%d', n) end

local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fmt(now - keep))
for _, m in ipairs(old) do redis.call('HDEL', KEYS[2], m) end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - keep)) end

local orders, spent, oldest = 0, 0, -1
local window = math.max(orderPer, spendPer)
local ents = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. fmt(now - window), '+inf', 'WITHSCORES')
local priced = {}
for i = 1, #ents, 2 do
	local at = tonumber(ents[i + 1])
	if orderPer > 0 and at > now - orderPer then
		orders = orders + 1
		if oldest < 0 or at < oldest then oldest = at end
	end
	if spendPer > 0 and at > now - spendPer then priced[#priced + 1] = ents[i] end
end
-- Costs in batches: unpack has a limit on its arguments.
for i = 1, #priced, 1000 do
	local costs = redis.call('HMGET', KEYS[2], unpack(priced, i, math.min(i + 999, #priced)))
	for _, c in ipairs(costs) do spent = spent + (tonumber(c) or 0) end
end
if op == 'usage' then return {0, 0, 0, orders, spent} end

if redis.call('ZSCORE', KEYS[1], key) then return {1, 0, 0, orders, spent} end
if price < 0 then return {0, 3, 0, orders, spent} end
if orderPer > 0 and orders >= maxOrders then return {0, 1, oldest + orderPer - now, orders, spent} end
if spendPer > 0 and spent + price > maxSpend then return {0, 2, 0, orders, spent} end
redis.call('ZADD', KEYS[1], fmt(now), key)
redis.call('HSET', KEYS[2], key, fmt(price))
redis.call('PEXPIRE', KEYS[1], fmt(keep))
redis.call('PEXPIRE', KEYS[2], fmt(keep))
if orderPer > 0 then orders = orders + 1 end
if spendPer > 0 then spent = spent + price end
return {0, 0, 0, orders, spent}
`)

// settleScript sets an order's cost if it is counted. KEYS as guardScript;
// ARGV: order key, hundredths.
var settleScript = redis.NewScript(`
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return 0
`)

func (g *GuardStore) run(ctx context.Context, op string, o guard.Order, l guard.Limits) ([]int64, error) {
	keep := max(l.Keep, l.OrderPer, l.SpendPer)
	v, err := guardScript.Run(ctx, g.client, g.keys, op, o.Time.UnixMilli(), o.Key, o.Cents,
		l.Orders, l.OrderPer.Milliseconds(), l.Spend, l.SpendPer.Milliseconds(), keep.Milliseconds()).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("redis guard %s: %w", op, err)
	}
	if len(v) != 5 {
		return nil, fmt.Errorf("redis guard %s: unexpected answer %v", op, v)
	}
	return v, nil
}

// Reserve implements guard.Store.
func (g *GuardStore) Reserve(ctx context.Context, o guard.Order, l guard.Limits) (guard.Decision, error) {
	v, err := g.run(ctx, "reserve", o, l)
	if err != nil {
		return guard.Decision{}, err
	}
	d := guard.Decision{Known: v[0] == 1, RetryAfter: time.Duration(v[2]) * time.Millisecond,
		Usage: guard.Usage{Orders: int(v[3]), Spent: v[4]}}
	switch v[1] {
	case 1:
		d.Refused = guard.RuleOrderLimit
	case 2:
		d.Refused = guard.RuleSpendLimit
	case 3:
		d.Refused = guard.RuleUnpriced
	}
	return d, nil
}

// Usage implements guard.Store.
func (g *GuardStore) Usage(ctx context.Context, now time.Time, l guard.Limits) (guard.Usage, error) {
	v, err := g.run(ctx, "usage", guard.Order{Time: now}, l)
	if err != nil {
		return guard.Usage{}, err
	}
	return guard.Usage{Orders: int(v[3]), Spent: v[4]}, nil
}

// Settle implements guard.Store.
func (g *GuardStore) Settle(ctx context.Context, key string, cents int64) error {
	if err := settleScript.Run(ctx, g.client, g.keys, key, cents).Err(); err != nil {
		return fmt.Errorf("redis guard settle: %w", err)
	}
	return nil
}

// Release implements guard.Store.
func (g *GuardStore) Release(ctx context.Context, key string) error {
	_, err := g.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, g.keys[0], key)
		p.HDel(ctx, g.keys[1], key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis guard release: %w", err)
	}
	return nil
}
