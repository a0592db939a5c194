package main

import (
	"context"

	"github.com/matrix-2fa/matrix-2fa/homeserver"
	"github.com/matrix-2fa/matrix-2fa/notify"
)

// serverNotices delivers notices as Matrix server notices: a notify.Sender
// whose messages go to a user ID (Message.To) instead of an address.
type serverNotices struct {
	hs    *homeserver.Client
	token string // a homeserver admin's access token
}

var _ notify.Sender = serverNotices{}

// Send implements notify.Sender.
func (s serverNotices) Send(ctx context.Context, msg notify.Message) error {
	return s.hs.ServerNotice(ctx, s.token, msg.To, msg.Subject+"\n\n"+msg.Text)
}
