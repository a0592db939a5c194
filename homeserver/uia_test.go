package homeserver_test

import (
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
)

func TestParseUIA(t *testing.T) {
	tests := []struct {
		name          string
		body          string
		ok            bool
		wantFlows     [][]mautrix.AuthType
		wantSession   string
		wantCompleted []string
		wantErrCode   string
		wantParams    []mautrix.AuthType // keys that must be present
	}{
		{
			name:      "dendrite challenge",
			body:      `{"completed":[],"flows":[{"stages":["m.login.password"]}],"session":"kLhbHEHWXM","params":{}}`,
			ok:        true,
			wantFlows: [][]mautrix.AuthType{{"m.login.password"}}, wantSession: "kLhbHEHWXM", wantCompleted: []string{},
		},
		{
			name:      "dendrite wrong password: completed null, empty session",
			body:      `{"completed":null,"flows":[{"stages":["m.login.password"]}],"session":"","errcode":"M_FORBIDDEN","error":"The username or password was incorrect or the account does not exist."}`,
			ok:        true,
			wantFlows: [][]mautrix.AuthType{{"m.login.password"}}, wantCompleted: []string{}, wantErrCode: "M_FORBIDDEN",
		},
		{
			name:      "no session, no params, no completed",
			body:      `{"flows":[{"stages":["m.login.password"]},{"stages":["m.login.sso"]}]}`,
			ok:        true,
			wantFlows: [][]mautrix.AuthType{{"m.login.password"}, {"m.login.sso"}}, wantCompleted: []string{},
		},
		{
			name:      "nulls everywhere but flows",
			body:      `{"flows":[{"stages":null},{"stages":["m.login.dummy"]}],"session":null,"params":null,"completed":null,"errcode":null}`,
			ok:        true,
			wantFlows: [][]mautrix.AuthType{{}, {"m.login.dummy"}}, wantCompleted: []string{},
		},
		{
			name:      "synapse multi-stage with params and progress",
			body:      `{"flows":[{"stages":["m.login.terms","m.login.password"]}],"params":{"m.login.terms":{"policies":{}}},"session":"xyz","completed":["m.login.terms"]}`,
			ok:        true,
			wantFlows: [][]mautrix.AuthType{{"m.login.terms", "m.login.password"}}, wantSession: "xyz",
			wantCompleted: []string{"m.login.terms"}, wantParams: []mautrix.AuthType{"m.login.terms"},
		},
		{
			name:      "wrong-typed optional fields ignored",
			body:      `{"flows":[{"stages":["m.login.password"]}],"session":42,"completed":"m.login.password","params":[]}`,
			ok:        true,
			wantFlows: [][]mautrix.AuthType{{"m.login.password"}}, wantCompleted: []string{},
		},
		{name: "plain Matrix error", body: `{"errcode":"M_FORBIDDEN","error":"no"}`},
		{name: "empty flows", body: `{"flows":[],"session":"s"}`},
		{name: "null flows", body: `{"flows":null,"session":"s"}`},
		{name: "flows not an array", body: `{"flows":"m.login.password"}`},
		{name: "top-level array", body: `[{"flows":[]}]`},
		{name: "garbage", body: `<html>Unauthorized</html>`},
		{name: "empty body", body: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := homeserver.ParseUIA([]byte(tt.body))
			if ok != tt.ok {
				t.Fatalf("ParseUIA ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				if got != nil {
					t.Errorf("ParseUIA returned %+v with ok=false", got)
				}
				return
			}
			if len(got.Flows) != len(tt.wantFlows) {
				t.Fatalf("flows %+v, want %v", got.Flows, tt.wantFlows)
			}
			for i, f := range got.Flows {
				if f.Stages == nil || len(f.Stages) != len(tt.wantFlows[i]) {
					t.Fatalf("flow %d stages %#v, want %v", i, f.Stages, tt.wantFlows[i])
				}
				for j := range f.Stages {
					if f.Stages[j] != tt.wantFlows[i][j] {
						t.Errorf("flow %d stage %d = %s, want %s", i, j, f.Stages[j], tt.wantFlows[i][j])
					}
				}
			}
			if got.Session != tt.wantSession {
				t.Errorf("session %q, want %q", got.Session, tt.wantSession)
			}
			if got.Completed == nil || len(got.Completed) != len(tt.wantCompleted) {
				t.Errorf("completed %#v, want %#v (never nil)", got.Completed, tt.wantCompleted)
			} else {
				for i := range got.Completed {
					if got.Completed[i] != tt.wantCompleted[i] {
						t.Errorf("completed %v, want %v", got.Completed, tt.wantCompleted)
					}
				}
			}
			if got.ErrCode != tt.wantErrCode {
				t.Errorf("errcode %q, want %q", got.ErrCode, tt.wantErrCode)
			}
			for _, k := range tt.wantParams {
				if _, ok := got.Params[k]; !ok {
					t.Errorf("params %v lack %s", got.Params, k)
				}
			}
		})
	}
}
