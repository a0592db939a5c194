package main

import (
	"context"
	"fmt"

	"github.com/matrix-2fa/matrix-2fa/account"
	"github.com/matrix-2fa/matrix-2fa/metrics"
	"github.com/matrix-2fa/matrix-2fa/notify"
	"github.com/matrix-2fa/matrix-2fa/storage"
)

// observer passes what happens to accounts on to the metrics and, when mail
// is configured, to the user as a notice.
type observer struct {
	m *metrics.Metrics
	// n sends notices by e-mail (nil: none); emails finds where they go.
	n      *notify.Notifier
	emails func(ctx context.Context, userID string) ([]string, error)
	// sn sends them as Matrix server notices (nil: none).
	sn *notify.Notifier
}

var _ account.Observer = observer{}

// Attempt implements account.Observer.
func (o observer) Attempt(method, result string) { o.m.SecondFactorAttempt(method, result) }

// noticeOf is the notice (and metric) of each audit event worth telling.
var noticeOf = map[string]struct {
	change string
	kind   notify.Kind
}{
	storage.AuditConfirm:      {metrics.ChangeEnabled, notify.KindEnabled},
	storage.AuditDisable:      {metrics.ChangeDisabled, notify.KindDisabled},
	storage.AuditRegenerate:   {metrics.ChangeRegenerated, notify.KindRecoveryRegenerated},
	storage.AuditAdminReset:   {metrics.ChangeAdminReset, notify.KindAdminReset},
	storage.AuditRecoveryUsed: {"", notify.KindRecoveryUsed},
	storage.AuditLockout:      {"", notify.KindLockout},
}

// Event implements account.Observer.
func (o observer) Event(userID, kind, detail string) {
	n, ok := noticeOf[kind]
	if !ok {
		return
	}
	switch {
	case n.change != "":
		o.m.EnrolmentChange(n.change)
	case kind == storage.AuditLockout:
		o.m.Lockout()
	}
	notice := notify.Notice{Kind: n.kind, UserID: userID}
	if kind == storage.AuditRecoveryUsed {
		fmt.Sscanf(detail, "%d remaining", &notice.Remaining)
	}
	if o.sn != nil {
		notice.To = userID // a server notice goes to the user ID
		o.sn.Notify(notice)
	}
	if o.n == nil {
		return
	}
	addresses, err := o.emails(context.Background(), userID)
	if err != nil || len(addresses) == 0 {
		return // nowhere to send it (counted nowhere: not a failure)
	}
	notice.To = addresses[0]
	o.n.Notify(notice)
}
