package ratelimit

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(10*time.Second, 3)
	l.SetClock(func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait <= 0 || wait > 10*time.Second {
		t.Fatalf("4th request: ok=%v wait=%v; want refused with a wait of at most 10s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another address shares the bucket")
	}
	now = now.Add(wait)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused after the announced wait")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("a refused request took no token, yet the next one right after got through twice")
	}
	if ok, _ := New(0, 0).Allow("x"); !ok {
		t.Fatal("a disabled limiter refused")
	}
}

// TestLimiterIPv6Network: the addresses of one IPv6 /64 share a bucket, so a
// client cannot take a fresh burst with each of its addresses; IPv4 and
// other /64s do not.
func TestLimiterIPv6Network(t *testing.T) {
	for _, tc := range []struct {
		first, second string
		shared        bool
	}{
		{"2001:db8:1:2::1", "2001:db8:1:2::2", true},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"2001:db8:1:2::1", "2001:DB8:1:2:0::9", true},
		{"fe80::1%eth0", "fe80::2%eth1", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"192.0.2.1", "192.0.2.2", false},
		{"::ffff:192.0.2.1", "::ffff:192.0.2.2", false},
		{"not an address", "not an address either", false},
	} {
		l := New(time.Hour, 1)
		if ok, _ := l.Allow(tc.first); !ok {
			t.Fatalf("%s: first request refused", tc.first)
		}
		if ok, _ := l.Allow(tc.second); ok == tc.shared {
			t.Errorf("%s then %s: second allowed = %v, want %v", tc.first, tc.second, ok, !tc.shared)
		}
	}
}

func TestLimiterBounded(t *testing.T) {
	l := New(time.Second, 1)
	now := time.Unix(0, 0)
	l.SetClock(func() time.Time { return now })
	for i := 0; i < maxKeys+10; i++ {
		l.Allow(string(rune(i)) + "k")
	}
	if n := len(l.buckets); n > maxKeys {
		t.Fatalf("%d buckets kept; bound is %d", n, maxKeys)
	}
}

func TestClientAddr(t *testing.T) {
	loop, err := ParseProxies([]string{"127.0.0.0/8", "::1", "10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		proxies Proxies
		remote  string
		xff     []string
		want    string
	}{
		{"direct, no header", loop, "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer's header ignored", loop, "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"trusted proxy names the client", loop, "127.0.0.1:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"forged left entries ignored", loop, "127.0.0.1:4000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", loop, "127.0.0.1:4000", []string{"198.51.100.1, 10.1.2.3"}, "198.51.100.1"},
		{"two headers joined", loop, "[::1]:4000", []string{"198.51.100.1", "10.0.0.9"}, "198.51.100.1"},
		{"garbage stops the walk", loop, "127.0.0.1:4000", []string{"198.51.100.1, nonsense"}, "127.0.0.1"},
		{"no proxies trusted", nil, "127.0.0.1:4000", []string{"198.51.100.1"}, "127.0.0.1"},
		{"mapped IPv4", loop, "[::ffff:127.0.0.1]:4000", []string{"198.51.100.7"}, "198.51.100.7"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := tc.proxies.ClientAddr(r); got != tc.want {
			t.Errorf("%s: %s; want %s", tc.name, got, tc.want)
		}
	}
	if _, err := ParseProxies([]string{"not an address"}); err == nil {
		t.Error("ParseProxies accepted garbage")
	}
}

func TestTrustedPeer(t *testing.T) {
	p, err := ParseProxies([]string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	for remote, want := range map[string]bool{"127.0.0.1:80": true, "[::ffff:127.0.0.2]:80": true, "10.0.0.1:80": false, "garbage": false} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if got := p.TrustedPeer(r); got != want {
			t.Errorf("TrustedPeer(%s) = %v; want %v", remote, got, want)
		}
	}
}
