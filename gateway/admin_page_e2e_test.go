package gateway_test

import (
	"context"
	"os"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/storage"
)

// TestBrowserAdminPage drives the admin page in headless Chromium
// (tests/browser/admin.mjs): a homeserver admin with 2FA signs in, forged
// forms are refused, a locked user is unlocked and reset after confirmation.
func TestBrowserAdminPage(t *testing.T) {
	e := newAdminEnv(t)
	boss := e.enrolUser(e.registerAdmin("pageboss"))
	target := e.enrol("pagevictim")
	for i := 0; i < 5; i++ {
		expect(t, e.provider("POST", target.UserID, "verify", providerSecret, map[string]any{"code": e.wrongCode(target)}), 403, "M_FORBIDDEN")
	}
	vars := map[string]string{
		"GATEWAY_URL":    e.srv.URL,
		"ADMIN_USERNAME": boss.Localpart,
		"ADMIN_PASSWORD": boss.Password,
		"ADMIN_CODE":     e.peekCode(boss, 0),
		"TARGET":         target.UserID,
	}
	if dir := os.Getenv("SCREENSHOTS_DIR"); dir != "" {
		vars["SCREENSHOTS_DIR"] = dir
	}
	runBrowser(t, "admin.mjs", vars)

	ctx := context.Background()
	if on, err := e.acc.Enabled(ctx, target.UserID); err != nil || on {
		t.Fatalf("target still has 2FA after the page's reset (%v)", err)
	}
	evs, err := e.db.QueryAudit(ctx, storage.AuditQuery{UserID: target.UserID, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{storage.AuditAdminReset: false, storage.AuditUnlock: false}
	for _, ev := range evs {
		if _, ok := want[ev.Kind]; ok && ev.Detail == "by "+boss.UserID {
			want[ev.Kind] = true
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no %s event by %s: %+v", k, boss.UserID, evs)
		}
	}
}
