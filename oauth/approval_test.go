package oauth

import (
	"strings"
	"testing"

	"github.com/matrix-2fa/matrix-2fa/trust"
)

// TestOperationSentence: what the approval view says for each operation,
// and which account page action approves it.
func TestOperationSentence(t *testing.T) {
	for _, c := range []struct {
		name   string
		op     Operation
		want   string
		action string
	}{
		{"one device", Operation{Op: trust.DeleteDevices, Devices: []string{"ABC"}}, "sign out the device “ABC”", ActionApprove},
		{"two devices", Operation{Op: trust.DeleteDevices, Devices: []string{"A", "B"}}, "sign out 2 devices: “A”, “B”", ActionApprove},
		{"no device", Operation{Op: trust.DeleteDevices}, "sign out no device (an empty list)", ActionApprove},
		{"a right-to-left override", Operation{Op: trust.DeleteDevices, Devices: []string{"\u202eENOHP"}}, "sign out the device “\\u{202E}ENOHP”", ActionApprove},
		{"a line break and the sentence's quote", Operation{Op: trust.DeleteDevice, Devices: []string{"PHONE” (only this app)\n“"}},
			"sign out the device “PHONE\\u{201D} (only this app)\\u{000A}\\u{201C}”", ActionApprove},
		{"non-ASCII", Operation{Op: trust.DeleteDevice, Devices: []string{"é"}}, "sign out the device “\\u{00E9}”", ActionApprove},
		{"very long", Operation{Op: trust.DeleteDevice, Devices: []string{strings.Repeat("A", 70)}},
			"sign out the device “" + strings.Repeat("A", 64) + "… (70 characters)”", ActionApprove},
		{"the device of the path", Operation{Op: trust.DeleteDevice, Devices: []string{"XYZ"}}, "sign out the device “XYZ”", ActionApprove},
		{"password", Operation{Op: trust.ChangePassword}, "change your password and sign out your other devices", ActionApprove},
		{"password, devices kept", Operation{Op: trust.ChangePassword, KeepDevices: true}, "change your password (your other devices stay signed in)", ActionApprove},
		{"deactivate", Operation{Op: trust.Deactivate}, "deactivate your account, for good", ActionApprove},
		{"deactivate and erase", Operation{Op: trust.Deactivate, Erase: true}, "deactivate your account and erase your messages, for good", ActionApprove},
		{"3pid", Operation{Op: trust.Add3PID}, "add an email address or phone number to your account", ActionApprove},
		{"login token", Operation{Op: trust.LoginToken}, "sign in another device with a one-time login token (for example by showing a QR code)", ActionApprove},
		{"reset", Operation{Op: trust.CrossSigningReset}, "reset your cross-signing keys (your digital identity for encrypted messages)", ActionCrossSigningReset},
		{"unknown", Operation{Op: "nonsense"}, "perform an operation the gateway cannot name; do not approve it", ActionApprove},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.op.Sentence(); got != c.want {
				t.Errorf("Sentence() = %q, want %q", got, c.want)
			}
			if got := c.op.Action(); got != c.action {
				t.Errorf("Action() = %q, want %q", got, c.action)
			}
		})
	}
}
