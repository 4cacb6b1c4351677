#!/usr/bin/env bash
# First use of the KernelHost Reseller API through khproxy, with curl (and jq
# to read the JSON answers).
#
# khproxy signs every request, so this script sends plain HTTP. It lists the
# products, places an order with its own Idempotency-Key, sends the same order
# again as a retry would (the API replays its answer: no second order), reads
# the order back, downloads the invoice PDF and shows a problem+json error.
#
#   KHPROXY_URL=http://127.0.0.1:8080 bash example.sh
#
# The invoice PDF goes to OUT_DIR when set, else to a new temporary directory;
# the line that reports it names the file.
#
# What the spec documents and what it does not: the paths, the
# Idempotency-Key rules and the problem+json fields are the API's (spec §2,
# §5, §6). The answer bodies this example reads (data, prices, status,
# pending/paid, invoice_id), the Idempotent-Replayed header and the 409
# reasons are the emulator's choices, which the real API may not share:
# the provenance table in docs/emulator.md lists them.
#
# Exit status 0 when every step worked, 1 with the reason otherwise.
set -euo pipefail

BASE="${KHPROXY_URL:-http://127.0.0.1:8080}"
BASE="${BASE%/}"

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

command -v curl >/dev/null || fail "this example needs curl"
command -v jq >/dev/null || fail "this example needs jq (Debian: apt-get install jq)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# call METHOD PATH [curl options...] sends one request to khproxy. The answer
# is in $status (000 when there was none, the reason in $work/error), the
# headers in $work/headers and the body in $work/body.
#   --noproxy '*': khproxy is a local sidecar; never send its traffic through
#   an http_proxy from the environment.
#   --max-time 70: khproxy retries the API for up to KH_RETRY_BUDGET (30 s)
#   + KH_UPSTREAM_TIMEOUT.
call() {
  local method=$1 path=$2
  shift 2
  if ! status=$(curl -sS --noproxy '*' --max-time 70 -X "$method" "$@" \
      -D "$work/headers" -o "$work/body" -w '%{http_code}' "$BASE$path" 2>"$work/error"); then
    status=000
  fi
}

# header NAME prints the value of a response header ("" when absent).
header() {
  grep -i "^$1:" "$work/headers" | tail -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//' || true
}

# problem FILTER reads a field of a problem+json answer; it fails when the
# answer is not problem+json.
problem() {
  case "$(header Content-Type)" in
    application/problem+json*) jq -r "$1 // empty" "$work/body" ;;
    *) return 1 ;;
  esac
}

# expect STATUS WHAT fails unless the last answer had STATUS.
expect() {
  if [ "$status" = 000 ]; then
    fail "cannot reach khproxy at $BASE: $(cat "$work/error") (is it running? try: khproxy demo)"
  fi
  if [ "$status" != "$1" ]; then
    fail "$2: status $status, want $1: $(problem .detail || head -c 200 "$work/body")"
  fi
}

# post_idempotent PATH BODY KEY POSTs BODY with the caller's own
# Idempotency-Key, retrying safely: every attempt sends the same key and the
# same body bytes, so the API runs the order at most once and replays its
# answer to a retry (spec §2). Retried: no answer at all, 429 (spec §4.3:
# honour Retry-After), 502, 503 and 504. Every other answer is the caller's
# to judge.
#
# The 409 request_in_progress branch is the emulator's answer while the first
# attempt still runs; what the real API answers then is not documented (spec
# §2). Against the API it never matches, and any other 409 (such as
# idempotency_conflict) is final, so it does no harm.
post_idempotent() {
  local path=$1 body=$2 key=$3 attempt reason wait
  for attempt in 0 1 2 3 4; do
    call POST "$path" -H 'Content-Type: application/json' -H "Idempotency-Key: $key" --data-binary "$body"
    case "$status" in
      000) reason="no answer ($(cat "$work/error"))" ;;
      409) [ "$(problem .reason)" = request_in_progress ] || return 0
           reason="the first attempt is still running" ;;
      429 | 502 | 503 | 504) reason="status $status" ;;
      *) return 0 ;;
    esac
    [ "$attempt" -lt 4 ] || fail "POST $path: gave up after 5 attempts: $reason"
    wait=$(header Retry-After)
    case "$wait" in
      '' | *[!0-9]*) wait=$((1 << attempt)) ;; # no Retry-After: exponential backoff
    esac
    echo "   retrying in ${wait}s with the same Idempotency-Key: $reason"
    sleep "$wait"
  done
}

echo "khproxy at $BASE"

# 1. The catalog.
call GET /v1/products
expect 200 "GET /v1/products"
count=$(jq '.data | length' "$work/body")
[ "$count" -gt 0 ] || fail "GET /v1/products: the catalog is empty"
product=$(jq -c '(.data | map(select(.id == 42)) | first) // .data[0]' "$work/body")
product_id=$(jq -r .id <<<"$product")
echo "1. products: $count listed; ordering $product_id $(jq -r '"\"\(.name)\" (\(.prices.monthly) \(.currency) monthly)"' <<<"$product")"

# 2. An order with our own Idempotency-Key (1-80 of A-Z a-z 0-9 _ . -).
key="example-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
order_body="{\"product_id\":$product_id,\"billing_cycle\":\"monthly\"}"
post_idempotent /v1/orders "$order_body" "$key"
expect 201 "POST /v1/orders"
order_id=$(jq -r .id "$work/body")
location=$(header Location)
location=${location:-/v1/orders/$order_id}
echo "2. order placed: $status, order $order_id, Idempotency-Key $key"

# 3. The same request again, as a retry after a lost answer would send it.
post_idempotent /v1/orders "$order_body" "$key"
expect 201 "POST /v1/orders (retry)"
again_id=$(jq -r .id "$work/body")
[ "$again_id" = "$order_id" ] || fail "the retry placed a second order: $again_id besides $order_id"
replayed=$(header Idempotent-Replayed)
echo "3. same request again: $status, order $again_id, Idempotent-Replayed: ${replayed:-(not sent)} (no second order)"

# 4. Read the order back where its Location points (khproxy maps it to
#    /v1/...). While the payment settles the order is "pending".
for _ in $(seq 30); do
  call GET "$location"
  expect 200 "GET $location"
  [ "$(jq -r .status "$work/body")" = pending ] || break
  echo "   order $order_id is pending; asking again in 1s"
  sleep 1
done
invoice_id=$(jq -r '.invoice_id // empty' "$work/body")
[ "$(jq -r .status "$work/body")" = paid ] && [ -n "$invoice_id" ] ||
  fail "order $order_id is $(jq -r '"\(.status): \(.failure_reason // "no invoice")"' "$work/body")"
echo "4. order read back from $location: $(jq -r .id "$work/body") status $(jq -r .status "$work/body"), invoice $invoice_id"

# 5. The invoice as a PDF.
call GET "/v1/billing/invoices/$invoice_id/pdf"
expect 200 "GET /v1/billing/invoices/{id}/pdf"
[ "$(head -c 4 "$work/body")" = "%PDF" ] || fail "the invoice is not a PDF: it starts with $(head -c 8 "$work/body" | od -An -c)"
out_dir="${OUT_DIR:-$(mktemp -d -t khproxy-example-XXXXXX)}"
name="$out_dir/invoice-$invoice_id.pdf"
cp "$work/body" "$name"
echo "5. invoice PDF: $(wc -c <"$name" | tr -d ' ') bytes saved to $name"

# 6. An error: the same key with another body is refused, as problem+json.
post_idempotent /v1/orders "{\"product_id\":$product_id,\"billing_cycle\":\"annually\"}" "$key"
[ "$status" = 409 ] && [ -n "$(problem .type)" ] ||
  fail "reusing the key with another body: status $status, want a 409 problem"
echo "6. problem+json: $(problem .status) $(problem '.type | split("/") | last') (reason $(problem '.reason // "-"')): $(problem .detail)"
problem '.errors[]? | "   \(.field): \(.message)"'
echo "ok"
