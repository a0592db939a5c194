package main

import (
	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/metrics"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// observer passes what happens to accounts on to the metrics.
type observer struct{ m *metrics.Metrics }

var _ account.Observer = observer{}

// Attempt implements account.Observer.
func (o observer) Attempt(method, result string) { o.m.SecondFactorAttempt(method, result) }

// Event implements account.Observer.
func (o observer) Event(_, kind, _ string) {
	switch kind {
	case storage.AuditConfirm:
		o.m.EnrolmentChange(metrics.ChangeEnabled)
	case storage.AuditDisable:
		o.m.EnrolmentChange(metrics.ChangeDisabled)
	case storage.AuditRegenerate:
		o.m.EnrolmentChange(metrics.ChangeRegenerated)
	case storage.AuditAdminReset:
		o.m.EnrolmentChange(metrics.ChangeAdminReset)
	case storage.AuditLockout:
		o.m.Lockout()
	}
}
