package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"khproxy/webhook"
)

// Test vectors, computed with openssl, not with this package. $B is the
// body below, $B2 the second body:
//
//	printf '%s' "1750000000.$B" | openssl dgst -sha256 -hmac 'whsec_current_9f2KxQ' | sed 's/^.* //'
const (
	secretCurrent  = "whsec_current_9f2KxQ"
	secretPrevious = "whsec_previous_4LmZ"
	vecT           = 1750000000
	vecBody        = `{"id":"evt_01J0TEST","type":"order.paid","created":1750000000,"data":{"id":1001}}`
	vecBody2       = `{"id":"evt_01J0TEST2","type":"invoice.created","created":1750000000,"data":{"id":9001}}`

	// printf '%s' "1750000000.$B" | openssl dgst -sha256 -hmac 'whsec_current_9f2KxQ' | sed 's/^.* //'
	sigCurrent = "a173f261cfcde658c789731369e61699555a6c3ae45e927f57226bf0241308cd"
	// printf '%s' "1750000000.$B" | openssl dgst -sha256 -hmac 'whsec_previous_4LmZ' | sed 's/^.* //'
	sigPrevious = "e398f36e6ff3db49a6fea288e6a4d6841503bd204895a3ff89ff4806ca9b98f9"
	// printf '%s' "1750000000.$B2" | openssl dgst -sha256 -hmac 'whsec_current_9f2KxQ' | sed 's/^.* //'
	sigCurrent2 = "c8c13b36ca366659c97d6b8acca77325ac8dcb65043ab0acae18f9ad69fd7cac"
	// printf '%s' "1750000000." | openssl dgst -sha256 -hmac 'whsec_current_9f2KxQ' | sed 's/^.* //'
	sigEmptyBody = "04d5dabd6a66bdeac017bfb39361f88468613ef19393127286f3a79dd25d67a2"
)

// vecNow is the receiver's clock in the tests: 30 s after the vectors were
// signed.
var vecNow = time.Unix(vecT+30, 0)

func TestVerify(t *testing.T) {
	t0 := "t=" + strconv.Itoa(vecT)
	tampered := strings.Replace(vecBody, "1001", "1002", 1)
	tests := []struct {
		name   string
		secret string
		header string
		body   string
		now    time.Time
		want   error // nil: accepted
	}{
		{"valid", secretCurrent, t0 + ",v1=" + sigCurrent, vecBody, vecNow, nil},
		{"spaces around elements", secretCurrent, " " + t0 + ", v1=" + sigCurrent + " ", vecBody, vecNow, nil},
		{"empty body", secretCurrent, t0 + ",v1=" + sigEmptyBody, "", vecNow, nil},
		{"rotation: old then new, receiver has new", secretCurrent, t0 + ",v1=" + sigPrevious + ",v1=" + sigCurrent, vecBody, vecNow, nil},
		{"rotation: old then new, receiver has old", secretPrevious, t0 + ",v1=" + sigPrevious + ",v1=" + sigCurrent, vecBody, vecNow, nil},
		{"non-hex v1 before a valid one", secretCurrent, t0 + ",v1=zz-not-hex,v1=" + sigCurrent, vecBody, vecNow, nil},
		{"non-hex v1 after a valid one", secretCurrent, t0 + ",v1=" + sigCurrent + ",v1=zz-not-hex", vecBody, vecNow, nil},
		{"v0 and unknown schemes ignored", secretCurrent, "v0=abc," + t0 + ",v2=def,x=,v1=" + sigCurrent, vecBody, vecNow, nil},
		{"t after v1", secretCurrent, "v1=" + sigCurrent + "," + t0, vecBody, vecNow, nil},
		{"exactly at the tolerance, past", secretCurrent, t0 + ",v1=" + sigCurrent, vecBody, time.Unix(vecT, 0).Add(5 * time.Minute), nil},
		{"exactly at the tolerance, future", secretCurrent, t0 + ",v1=" + sigCurrent, vecBody, time.Unix(vecT, 0).Add(-5 * time.Minute), nil},

		{"empty header", secretCurrent, "", vecBody, vecNow, webhook.ErrNoSignature},
		{"blank header", secretCurrent, "  ", vecBody, vecNow, webhook.ErrNoSignature},
		{"v1 without value, t=1", secretCurrent, "v1,t=1", vecBody, vecNow, webhook.ErrMalformed},
		{"t= alone", secretCurrent, "t=", vecBody, vecNow, webhook.ErrMalformed},
		{"empty t with valid v1", secretCurrent, "t=,v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},
		{"no t", secretCurrent, "v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},
		{"no v1", secretCurrent, t0, vecBody, vecNow, webhook.ErrMalformed},
		{"v0 only", secretCurrent, t0 + ",v0=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},
		{"two t", secretCurrent, t0 + "," + t0 + ",v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},
		{"t not a number", secretCurrent, "t=soon,v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},
		{"t negative", secretCurrent, "t=-1,v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},
		{"t with plus sign", secretCurrent, "t=+" + strconv.Itoa(vecT) + ",v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},
		{"t too long", secretCurrent, "t=9999999999999,v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},
		{"empty element", secretCurrent, t0 + ",,v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},
		{"trailing comma", secretCurrent, t0 + ",v1=" + sigCurrent + ",", vecBody, vecNow, webhook.ErrMalformed},
		{"empty key", secretCurrent, t0 + ",=x,v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},
		{"semicolons", secretCurrent, t0 + ";v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMalformed},

		{"wrong secret", "whsec_wrong", t0 + ",v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMismatch},
		{"signed with the previous secret only", secretCurrent, t0 + ",v1=" + sigPrevious, vecBody, vecNow, webhook.ErrMismatch},
		{"tampered body", secretCurrent, t0 + ",v1=" + sigCurrent, tampered, vecNow, webhook.ErrMismatch},
		{"body with a trailing newline", secretCurrent, t0 + ",v1=" + sigCurrent, vecBody + "\n", vecNow, webhook.ErrMismatch},
		{"tampered timestamp", secretCurrent, "t=" + strconv.Itoa(vecT+1) + ",v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMismatch},
		{"leading zero in t", secretCurrent, "t=0" + strconv.Itoa(vecT) + ",v1=" + sigCurrent, vecBody, vecNow, webhook.ErrMismatch},
		{"v0 never enough", secretCurrent, t0 + ",v0=" + sigCurrent + ",v1=" + sigPrevious, vecBody, vecNow, webhook.ErrMismatch},
		{"uppercase hex", secretCurrent, t0 + ",v1=" + strings.ToUpper(sigCurrent), vecBody, vecNow, webhook.ErrMismatch},
		{"truncated v1", secretCurrent, t0 + ",v1=" + sigCurrent[:63], vecBody, vecNow, webhook.ErrMismatch},
		{"empty v1", secretCurrent, t0 + ",v1=", vecBody, vecNow, webhook.ErrMismatch},
		{"non-hex v1 only", secretCurrent, t0 + ",v1=zz-not-hex", vecBody, vecNow, webhook.ErrMismatch},

		{"stale", secretCurrent, t0 + ",v1=" + sigCurrent, vecBody, time.Unix(vecT, 0).Add(5*time.Minute + time.Second), webhook.ErrStale},
		{"future", secretCurrent, t0 + ",v1=" + sigCurrent, vecBody, time.Unix(vecT, 0).Add(-5*time.Minute - time.Second), webhook.ErrFuture},
		{"stale and forged: the signature is judged first", "whsec_wrong", t0 + ",v1=" + sigCurrent, vecBody, time.Unix(vecT, 0).Add(time.Hour), webhook.ErrMismatch},
	}
	sentinels := []error{webhook.ErrNoSignature, webhook.ErrMalformed, webhook.ErrMismatch, webhook.ErrStale, webhook.ErrFuture}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify([]byte(tt.secret), tt.header, []byte(tt.body), tt.now, 5*time.Minute)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want accepted", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("%v also matches %v", err, s)
				}
			}
			for _, sig := range []string{sigCurrent, sigPrevious, tt.secret} {
				if strings.Contains(err.Error(), sig) {
					t.Errorf("error %q quotes a signature or the secret", err)
				}
			}
		})
	}
}

// refV1 is the test's own v1 signature, for the fuzz oracle.
func refV1(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// FuzzVerify checks that no header makes Verify panic, that it only returns
// its documented errors, and that it never accepts a header without a v1
// element equal to the reference signature, with exactly one t within the
// tolerance.
func FuzzVerify(f *testing.F) {
	t0 := "t=" + strconv.Itoa(vecT)
	for _, h := range []string{
		t0 + ",v1=" + sigCurrent, t0 + ",v1=" + sigPrevious + ",v1=" + sigCurrent, "", "v1,t=1", "t=",
		t0 + ",v0=" + sigCurrent, t0 + ",v1=zz,v1=" + sigCurrent, "t=1,t=2,v1=", "=,=,=", ",", " t = 1 , v1 = x ",
	} {
		f.Add(h, []byte(vecBody))
	}
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := webhook.Verify([]byte(secretCurrent), header, body, vecNow, 5*time.Minute)
		if err != nil {
			for _, s := range []error{webhook.ErrNoSignature, webhook.ErrMalformed, webhook.ErrMismatch, webhook.ErrStale, webhook.ErrFuture} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("undocumented error %v", err)
		}
		var ts []string
		var v1 []string
		for _, elem := range strings.Split(header, ",") {
			k, v, _ := strings.Cut(strings.Trim(elem, " \t"), "=")
			switch k {
			case "t":
				ts = append(ts, v)
			case "v1":
				v1 = append(v1, v)
			}
		}
		if len(ts) != 1 {
			t.Fatalf("accepted %q with %d t elements", header, len(ts))
		}
		sec, perr := strconv.ParseInt(ts[0], 10, 64)
		if perr != nil || sec < vecT+30-300 || sec > vecT+30+300 {
			t.Fatalf("accepted %q: t out of tolerance", header)
		}
		want := refV1(secretCurrent, ts[0], body)
		for _, v := range v1 {
			if v == want {
				return
			}
		}
		t.Fatalf("accepted %q without a valid v1", header)
	})
}

func ExampleVerify() {
	header := "t=1750000000,v1=a173f261cfcde658c789731369e61699555a6c3ae45e927f57226bf0241308cd"
	body := []byte(`{"id":"evt_01J0TEST","type":"order.paid","created":1750000000,"data":{"id":1001}}`)
	secret := []byte("whsec_current_9f2KxQ")

	fmt.Println(webhook.Verify(secret, header, body, time.Unix(1750000030, 0), 5*time.Minute))
	fmt.Println(webhook.Verify(secret, header, body, time.Unix(1750000000+3600, 0), 5*time.Minute))
	// Output:
	// <nil>
	// timestamp too old: signed 1h0m0s ago, tolerance 5m0s
}

// BenchmarkVerify measures one verification of the order.paid vector.
func BenchmarkVerify(b *testing.B) {
	header, body, secret := signed(sigCurrent), []byte(vecBody), []byte(secretCurrent)
	b.ReportAllocs()
	for b.Loop() {
		if err := webhook.Verify(secret, header, body, vecNow, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}
