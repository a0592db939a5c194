package flows

// Factors are the 2FA stages a user may use: TOTP and recovery codes, and
// e-mail codes when withEmail (the operator turned them on and the user has
// a verified address).
func Factors(withEmail bool) []string {
	if withEmail {
		return []string{StageTOTP, StageRecovery, StageEmail}
	}
	return []string{StageTOTP, StageRecovery}
}

// orDefault is factors, or TOTP and recovery codes when none are given.
func orDefault(factors []string) []string {
	if len(factors) == 0 {
		return Factors(false)
	}
	return factors
}

// SecondFactorFlows are the flows of a request that needs only a second
// factor (regenerating recovery codes): one per factor (default TOTP and
// recovery codes).
func SecondFactorFlows(factors ...string) [][]string {
	var out [][]string
	for _, f := range orDefault(factors) {
		out = append(out, []string{f})
	}
	return out
}

// After returns one flow per 2FA stage with first before it, as on /login and
// our own endpoints: password first, then the second factor.
func After(first string, factors ...string) [][]string {
	var out [][]string
	for _, f := range orDefault(factors) {
		out = append(out, []string{first, f})
	}
	return out
}

// InFront puts the 2FA stages in front of every homeserver flow, one flow per
// 2FA stage, preserving the homeserver's order: the homeserver can then never
// complete the operation before the second factor is done.
func InFront(hsFlows [][]string, factors ...string) [][]string {
	if len(hsFlows) == 0 {
		return SecondFactorFlows(factors...)
	}
	var out [][]string
	for _, second := range orDefault(factors) {
		for _, f := range hsFlows {
			out = append(out, append([]string{second}, f...))
		}
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
func ForEndpoint(ep Endpoint, enabled bool, factors ...string) [][]string {
	switch ep {
	case EnrolTOTP:
		if !enabled {
			return [][]string{{StagePassword}}
		}
		return After(StagePassword, factors...)
	case DisableTOTP:
		return After(StagePassword, factors...)
	default:
		return SecondFactorFlows(factors...)
	}
}
