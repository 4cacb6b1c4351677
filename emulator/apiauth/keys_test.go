package apiauth_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"khproxy/emulator/apiauth"
)

func TestParseScopes(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"all", apiauth.AllScopes(), ""},
		{" read-only ", apiauth.ReadOnlyScopes(), ""},
		{"none", []string{}, ""},
		{"read:products", []string{"read:products"}, ""},
		{"write:orders, read:orders,,write:orders", []string{"write:orders", "read:orders"}, ""},
		{"read:everything", nil, `unknown scope "read:everything"`},
		{"All", nil, `unknown scope "All"`},
		{"", nil, "no scopes given"},
		{" , ", nil, "no scopes given"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := apiauth.ParseScopes(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got == nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %#v, %v; want %#v", got, err, tc.want)
			}
		})
	}
	if slices.Contains(apiauth.ReadOnlyScopes(), apiauth.ScopeReadCredentials) {
		t.Error("read-only scopes include read:credentials (spec §4.2: sensitive scopes are explicit)")
	}
}

func TestParseAllowIPs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"", nil, ""},
		{"192.0.2.7", []string{"192.0.2.7/32"}, ""},
		{"10.1.2.3/8, 2001:db8::1", []string{"10.0.0.0/8", "2001:db8::1/128"}, ""},
		{"::ffff:192.0.2.7", []string{"192.0.2.7/32"}, ""},
		{"2001:db8::/129", nil, "bad CIDR"},
		{"192.0.2", nil, "bad address"},
		{"example.com", nil, "bad address"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := apiauth.ParseAllowIPs(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			if err != nil || !slices.Equal(s, tc.want) {
				t.Errorf("got %v, %v; want %v", s, err, tc.want)
			}
		})
	}
}

func TestStoreSetRejectsMalformedKeys(t *testing.T) {
	tests := []struct {
		name    string
		key     apiauth.Key
		wantErr string
	}{
		{"short id", apiauth.Key{ID: "kh_live_ABC", Secret: secret}, "key id must match"},
		{"test prefix", apiauth.Key{ID: "kh_test_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", Secret: secret}, "key id must match"},
		{"empty secret", apiauth.Key{ID: keyID}, "empty secret"},
		{"unknown scope", apiauth.Key{ID: keyID, Secret: secret, Scopes: []string{"admin"}}, `unknown scope "admin"`},
		{"zero prefix", apiauth.Key{ID: keyID, Secret: secret, AllowIPs: []netip.Prefix{{}}}, "invalid AllowIPs prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s apiauth.Store
			if err := s.Set(tc.key); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Set: got %v, want error containing %q", err, tc.wantErr)
			}
			if err := s.Replace([]apiauth.Key{{ID: keyID, Secret: secret}, tc.key}); err == nil {
				t.Error("Replace: got nil error")
			}
			if got := s.Keys(); len(got) != 0 {
				t.Errorf("store changed: %v", got)
			}
		})
	}
}

func TestStoreKeys(t *testing.T) {
	const other = "kh_live_00000000000000000000000000000000"
	var s apiauth.Store
	for _, k := range []apiauth.Key{{ID: keyID, Secret: secret}, {ID: other, Secret: "s", Scopes: []string{}}} {
		if err := s.Set(k); err != nil {
			t.Fatal(err)
		}
	}
	keys := s.Keys()
	if len(keys) != 2 || keys[0].ID != other || keys[1].ID != keyID {
		t.Fatalf("Keys: got %v, want %s then %s", keys, other, keyID)
	}
	if got := keys[1].Scopes; !slices.Equal(got, apiauth.ReadOnlyScopes()) {
		t.Errorf("nil scopes: got %v, want the read-only scopes", got)
	}
	if got := keys[0].Scopes; got == nil || len(got) != 0 {
		t.Errorf("empty scopes: got %#v, want none", got)
	}
	if _, ok := s.Get("kh_live_11111111111111111111111111111111"); ok {
		t.Error("Get of an unknown id: found")
	}
}

func TestStoreUpdate(t *testing.T) {
	s := newStore(t)
	p, _, err := verify(s, signed{}.request(t), "/v1/services?page=2", specNow)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Allows(apiauth.ScopeReadServices) || p.Allows(apiauth.ScopeWriteOrders) {
		t.Errorf("read-only key: Allows read:services %v, write:orders %v", p.Allows(apiauth.ScopeReadServices), p.Allows(apiauth.ScopeWriteOrders))
	}
	k, err := s.Update(keyID, func(k *apiauth.Key) { k.Scopes = apiauth.AllScopes(); k.Secret = "rotated" })
	if err != nil || k.Secret != "rotated" {
		t.Fatalf("Update: got %v, %v", k, err)
	}
	if p.Allows(apiauth.ScopeWriteOrders) || p.Secret != secret {
		t.Error("a verified Principal changed with the store")
	}
	// The old secret fails from the next request on.
	_, _, err = verify(s, signed{}.request(t), "/v1/services?page=2", specNow)
	wantRefusal(t, err, 401, apiauth.ReasonSignatureFailed)

	if _, err := s.Update(keyID, func(k *apiauth.Key) { k.Scopes = []string{"nope"} }); err == nil {
		t.Error("Update to an unknown scope: got nil error")
	}
	if k, _ := s.Get(keyID); k.Secret != "rotated" || len(k.Scopes) != len(apiauth.AllScopes()) {
		t.Errorf("a refused Update changed the key: %v", k)
	}
	if _, err := s.Update("kh_live_11111111111111111111111111111111", func(*apiauth.Key) {}); !errors.Is(err, apiauth.ErrUnknownKey) {
		t.Errorf("unknown id: got %v, want ErrUnknownKey", err)
	}
}
