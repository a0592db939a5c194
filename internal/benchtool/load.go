package benchtool

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// newClient is a keep-alive client for conns concurrent requests to one host.
func newClient(conns int) *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		Proxy: nil, MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2, IdleConnTimeout: time.Minute,
	}}
}

// call sends one JSON request and decodes the answer into out (when not nil).
func call(ctx context.Context, c *http.Client, method, url, token string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %d %s: %w", method, url, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode, nil
}

// expect is call that fails unless the status is want.
func expect(ctx context.Context, c *http.Client, want int, method, url, token string, body, out any) error {
	var raw json.RawMessage
	status, err := call(ctx, c, method, url, token, body, &raw)
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("%s %s: %d %s, want %d", method, url, status, raw, want)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// jobs runs f(0) … f(n-1) on conns workers and returns the time taken; the
// first error stops it.
func jobs(ctx context.Context, conns, n int, f func(ctx context.Context, i int) error) (time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if err := context.Cause(ctx); err != nil && err != context.Canceled {
		return took, err
	}
	return took, nil
}

// during runs f on conns workers for d and returns how many calls succeeded
// and the time taken; the first error stops it.
func during(ctx context.Context, conns int, d time.Duration, f func(ctx context.Context) error) (int, time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				if err := f(ctx); err != nil {
					cancel(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if err := context.Cause(ctx); err != nil && err != context.Canceled {
		return int(done.Load()), took, err
	}
	return int(done.Load()), took, nil
}
