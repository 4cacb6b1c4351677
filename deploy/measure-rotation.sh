#!/bin/bash
# Measures what a secret rotation costs callers (README: Rotating the secret).
#
#   go build -o /tmp/khproxy . && deploy/measure-rotation.sh /tmp/khproxy 0
#
# usage: measure-rotation.sh KHPROXY_BINARY SWAP_DELAY_SECONDS
# Runs the binary's API emulator and khproxy with KH_SECRET_FILE (ports
# 28180, 28181, 29190 on loopback), sends GET /v1/me through khproxy 20 times
# a second for 12 s; at 4 s rotates the API's secret and swaps the file
# (renamed over, as the kubelet does) SWAP_DELAY seconds later. Prints the
# callers' status codes and khproxy's rotation metrics.
set -u
BIN=$1; DELAY=$2; D=$(mktemp -d)
KEY=kh_live_ROTATIONTEST00000000000000000000; SECRET=old-secret-value-123
if ss -ltn 2>/dev/null | grep -qE '127.0.0.1:(28180|28181|29190) '; then
  echo "a port of 28180, 28181, 29190 is in use" >&2; exit 1
fi
$BIN emulator -listen 127.0.0.1:28181 -key $KEY -secret $SECRET -no-rate-limit -scopes all >$D/emu.log 2>&1 &
EMU=$!
KH=
trap 'kill $KH $EMU 2>/dev/null; wait 2>/dev/null; rm -rf $D' EXIT
printf '%s' $SECRET > $D/secret
sleep 1
KH_KEY=$KEY KH_SECRET_FILE=$D/secret KH_UPSTREAM=http://127.0.0.1:28181/cp/kh_reseller_api KH_LISTEN=127.0.0.1:28180 KH_ADMIN_LISTEN=127.0.0.1:29190 KH_RATE_LIMIT=off KH_LOG_FORMAT=json $BIN >$D/kh.log 2>&1 &
KH=$!
sleep 1
(
  for i in $(seq 1 240); do
    curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:28180/v1/me &
    sleep 0.05
  done
  wait
) > $D/codes &
LOAD=$!
sleep 4
curl -s -X POST -d '{"secret":"new-secret-value-456"}' http://127.0.0.1:28181/__emulator/keys/$KEY/rotate-secret >/dev/null
sleep $DELAY
printf '%s' new-secret-value-456 > $D/secret.new && mv $D/secret.new $D/secret
wait $LOAD
sort $D/codes | uniq -c | tr '\n' ' '; echo
curl -s http://127.0.0.1:29190/metrics | grep -E '^khproxy_(secret_rereads_total|upstream_attempts_total\{reason="secret_rotated"|upstream_auth_failures_total\{reason="signature_mismatch")' | tr '\n' ' '; echo
