#!/usr/bin/env bash
# The emulator's control endpoint from any language, here bash with curl, jq
# and openssl: two accounts, tenant isolation and the 402 reason
# client_not_found, against `khproxy emulator` directly (no khproxy in front:
# this script signs each request itself, as the spec's quickstart does).
#
#   go run . emulator &                     # listens on 127.0.0.1:8081
#   EMULATOR_URL=http://127.0.0.1:8081 bash examples/control/tenants.sh
#
# Provenance: the signing, the 404 for another account's order (spec §4.5) and
# the 402 reason client_not_found (spec §6) are the API's; the control
# endpoint /__emulator/ and the account ids are the emulator's own.
#
# Exit status 0 when every step worked, 1 with the reason otherwise.
set -euo pipefail

E="${EMULATOR_URL:-http://127.0.0.1:8081}"
E="${E%/}"
API="$E${BASE_PATH-/cp/kh_reseller_api}"

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

for prog in curl jq openssl; do
  command -v "$prog" >/dev/null || fail "this example needs $prog"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# control METHOD PATH BODY calls the control endpoint; the answer is in
# $status and $work/body.
control() {
  status=$(curl -sS --noproxy '*' --max-time 10 -X "$1" -d "$3" -o "$work/body" -w '%{http_code}' "$E/__emulator/$2") ||
    fail "cannot reach the emulator at $E (is it running? try: go run . emulator)"
}

# api KEY SECRET METHOD PATH [BODY] sends one request signed with KEY and
# SECRET (spec §1.2: METHOD, PATH from /v1, timestamp, nonce and the body's
# SHA-256, joined by newlines). The answer is in $status and $work/body.
api() {
  local key=$1 secret=$2 method=$3 path=$4 body=${5-} ts nonce hash sig
  ts=$(date +%s)
  nonce=$(openssl rand -hex 16)
  hash=$(printf '%s' "$body" | openssl dgst -sha256 -hex | awk '{print $NF}')
  sig=$(printf '%s\n%s\n%s\n%s\n%s' "$method" "$path" "$ts" "$nonce" "$hash" |
    openssl dgst -sha256 -hmac "$secret" -hex | awk '{print $NF}')
  local args=(-H "KH-Key: $key" -H "KH-Timestamp: $ts" -H "KH-Nonce: $nonce" -H "KH-Signature: $sig")
  if [ -n "$body" ]; then
    args+=(-H 'Content-Type: application/json' -H "Idempotency-Key: $(openssl rand -hex 16)" --data-binary "$body")
  fi
  status=$(curl -sS --noproxy '*' --max-time 30 -X "$method" "${args[@]}" -o "$work/body" -w '%{http_code}' "$API$path") ||
    fail "$method $path: no answer from $API"
}

field() { jq -r "$1 // empty" "$work/body"; }

expect() {
  [ "$status" = "$1" ] || fail "$2: status $status, want $1: $(head -c 300 "$work/body")"
}

# 1. Two accounts, each with a key that may order.
control POST keys '{"account":"acct_a","scopes":"all"}'
expect 201 "POST /__emulator/keys (acct_a)"
a_key=$(field .id) a_secret=$(field .secret)
control POST keys '{"account":"acct_b","scopes":"all"}'
expect 201 "POST /__emulator/keys (acct_b)"
b_key=$(field .id) b_secret=$(field .secret)
echo "1. keys: $a_key (acct_a), $b_key (acct_b)"

# 2. acct_a orders.
order='{"product_id":42,"billing_cycle":"monthly"}'
api "$a_key" "$a_secret" POST /v1/orders "$order"
expect 201 "POST /v1/orders as acct_a"
order_id=$(field .id)
echo "2. acct_a placed order $order_id: $status $(field .status)"

# 3. acct_b cannot see it: 404, so ids cannot be enumerated (spec §4.5).
api "$b_key" "$b_secret" GET "/v1/orders/$order_id"
expect 404 "GET /v1/orders/$order_id as acct_b"
echo "3. acct_b reads order $order_id: $status $(field .type | sed 's|.*/||')"
api "$a_key" "$a_secret" GET "/v1/orders/$order_id"
expect 200 "GET /v1/orders/$order_id as acct_a"

# 4. acct_b's billing client goes missing: its orders get 402
#    client_not_found (spec §6), acct_a's still work.
control PUT accounts/acct_b '{"client_not_found":true}'
expect 200 "PUT /__emulator/accounts/acct_b"
api "$b_key" "$b_secret" POST /v1/orders "$order"
expect 402 "POST /v1/orders as acct_b without a client"
echo "4. acct_b orders: $status $(field .type | sed 's|.*/||') (reason $(field .reason))"
[ "$(field .reason)" = client_not_found ] || fail "reason $(field .reason), want client_not_found"
api "$a_key" "$a_secret" POST /v1/orders "$order"
expect 201 "POST /v1/orders as acct_a"
control PUT accounts/acct_b '{"client_not_found":false}'
expect 200 "PUT /__emulator/accounts/acct_b back"
echo ok
