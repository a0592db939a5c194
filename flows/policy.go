package flows

// SecondFactorFlows are the flows of a request that needs only a second
// factor (regenerating recovery codes).
func SecondFactorFlows() [][]string {
	return [][]string{{StageTOTP}, {StageRecovery}}
}

// After returns one flow per 2FA stage with first before it, as on /login and
// our own endpoints: password first, then the second factor.
func After(first string) [][]string {
	return [][]string{{first, StageTOTP}, {first, StageRecovery}}
}

// InFront puts the 2FA stages in front of every homeserver flow, one flow per
// 2FA stage, preserving the homeserver's order: the homeserver can then never
// complete the operation before the second factor is done.
func InFront(hsFlows [][]string) [][]string {
	var out [][]string
	for _, second := range []string{StageTOTP, StageRecovery} {
		for _, f := range hsFlows {
			out = append(out, append([]string{second}, f...))
		}
	}
	if len(hsFlows) == 0 {
		return SecondFactorFlows()
	}
	return out
}

// Endpoint names one of our own UIA-protected endpoints.
type Endpoint int

// Our endpoints.
const (
	EnrolTOTP   Endpoint = iota // POST /account/two-factor/totp
	DisableTOTP                 // DELETE /account/two-factor/totp
	Regenerate                  // POST /account/two-factor/recovery
)

// ForEndpoint is the flow policy of our own endpoints (protocol.md): enrolment
// needs the password, plus a second factor once 2FA is on; disabling needs
// both; regenerating recovery codes needs a second factor.
func ForEndpoint(ep Endpoint, enabled bool) [][]string {
	switch ep {
	case EnrolTOTP:
		if !enabled {
			return [][]string{{StagePassword}}
		}
		return After(StagePassword)
	case DisableTOTP:
		return After(StagePassword)
	default:
		return SecondFactorFlows()
	}
}
