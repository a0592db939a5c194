package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// passThroughBackend answers like a homeserver's pass-through endpoints, with
// bodies of about the size Dendrite's have.
func passThroughBackend() http.Handler {
	versions := `{"versions":["r0.0.1","r0.1.0","r0.2.0","r0.3.0","r0.4.0","r0.5.0","r0.6.0","r0.6.1","v1.1","v1.2","v1.3","v1.4","v1.5","v1.6"],"unstable_features":{"org.matrix.msc2285.stable":true}}`
	whoami := `{"user_id":"@bench:localhost","device_id":"ABCDEFGHIJ","is_guest":false}`
	pushrules := `{"global":{` + strings.Repeat(`"rule":{"actions":["notify",{"set_tweak":"sound","value":"default"}],"default":true,"enabled":true},`, 30) + `"end":{}}}`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := versions
		switch {
		case strings.HasSuffix(r.URL.Path, "/whoami"):
			body = whoami
		case strings.HasSuffix(r.URL.Path, "/pushrules/"):
			body = pushrules
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		io.WriteString(w, body)
	})
}

// BenchmarkPassThroughLocal measures the gateway's pass-through path against
// an in-process backend (no Dendrite): each path directly and through the
// gateway, over keep-alive connections. Client, gateway and backend share
// the process, so what the gateway adds is gateway minus direct, in ns/op
// and allocs/op.
func BenchmarkPassThroughLocal(b *testing.B) {
	backend := httptest.NewServer(passThroughBackend())
	b.Cleanup(backend.Close)
	gwURL := benchGateway(b, backend.URL)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute}}
	b.Cleanup(client.CloseIdleConnections)
	paths := []struct{ name, path, token string }{
		{"versions", "/_matrix/client/versions", ""},
		{"whoami", "/_matrix/client/v3/account/whoami", "syt_bench"},
		{"pushrules", "/_matrix/client/v3/pushrules/", "syt_bench"},
	}
	for _, p := range paths {
		for _, target := range []struct{ name, base string }{{"direct", backend.URL}, {"gateway", gwURL}} {
			b.Run(p.name+"/"+target.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					passThroughGet(b, client, target.base+p.path, p.token)
				}
			})
		}
	}
}

func passThroughGet(b *testing.B, client *http.Client, url, token string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hr, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, hr.Body)
	hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d", url, hr.StatusCode)
	}
}
