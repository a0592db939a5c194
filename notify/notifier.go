package notify

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Sender delivers one message; *Mailer is one.
type Sender interface {
	Send(ctx context.Context, msg Message) error
}

var _ Sender = (*Mailer)(nil)

// FailureCounter counts notices that were not delivered, by kind and reason (one of the
// Reason constants). *metrics.Metrics is one.
type FailureCounter interface {
	NotificationFailed(kind, reason string)
}

// Why a notice was not delivered.
const (
	ReasonSend      = "send_error" // the Sender failed (SMTP down, refused, timed out)
	ReasonQueueFull = "queue_full" // dropped: the queue was full
	ReasonClosed    = "closed"     // dropped: queued after Close, or left when Close timed out
	ReasonCompose   = "compose"    // the notice could not be written (unknown kind, no address)
)

// NotifierConfig tunes a Notifier. Zero values take the defaults.
type NotifierConfig struct {
	ServerName  string             // the homeserver's name in the texts; default: the user ID's server
	QueueSize   int                // notices waiting to be sent; default 256
	SendTimeout time.Duration      // for one notice; default 30s
	Logger      logrus.FieldLogger // default: logrus.StandardLogger()
	Failures    FailureCounter     // default: count nothing
	Now         func() time.Time   // stamps Notice.At; default time.Now
}

// Notifier sends notices in the background, one at a time, from a bounded queue: Notify never
// blocks and never fails the caller; a notice that cannot be queued or sent is logged and
// counted. Its methods are safe for concurrent use.
type Notifier struct {
	send  Sender
	cfg   NotifierConfig
	queue chan Notice

	mu     sync.RWMutex // guards closed against Notify sending on a closed queue
	closed bool

	ctx    context.Context // cancelled when Close gives up, to stop the send in flight
	cancel context.CancelFunc
	done   chan struct{} // closed when the worker has returned
}

// NewNotifier starts a Notifier that sends through s. Close stops it.
func NewNotifier(s Sender, cfg NotifierConfig) *Notifier {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = logrus.StandardLogger()
	}
	if cfg.Failures == nil {
		cfg.Failures = noCounter{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{send: s, cfg: cfg, queue: make(chan Notice, cfg.QueueSize), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go n.work()
	return n
}

// Notify queues nt for sending and returns at once. A zero nt.At becomes now. When the queue is
// full or the Notifier is closed, nt is dropped, logged and counted.
func (n *Notifier) Notify(nt Notice) {
	if nt.At.IsZero() {
		nt.At = n.cfg.Now()
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		n.fail(nt, ReasonClosed, errors.New("notifier closed"))
		return
	}
	select {
	case n.queue <- nt:
	default:
		n.fail(nt, ReasonQueueFull, errors.New("notification queue full"))
	}
}

// Close stops taking notices and sends those queued until ctx ends; then it drops the rest
// (logged and counted), stops the send in flight, and returns ctx's error. Calling it again
// waits for the same end.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.queue)
	}
	n.mu.Unlock()
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
		n.cancel() // the worker drops what is left
		<-n.done
		return ctx.Err()
	}
}

func (n *Notifier) work() {
	defer close(n.done)
	defer n.cancel()
	for nt := range n.queue {
		if n.ctx.Err() != nil {
			n.fail(nt, ReasonClosed, errors.New("notifier closed before sending"))
			continue
		}
		n.deliver(nt)
	}
}

func (n *Notifier) deliver(nt Notice) {
	server := n.cfg.ServerName
	if server == "" { // the user's own server, as their user ID names it
		_, server, _ = strings.Cut(nt.UserID, ":")
	}
	msg, err := ComposeNotice(nt, server)
	if err != nil {
		n.fail(nt, ReasonCompose, err)
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.SendTimeout)
	defer cancel()
	if err := n.send.Send(ctx, msg); err != nil {
		n.fail(nt, ReasonSend, err)
		return
	}
	n.log(nt).Debug("notification sent")
}

func (n *Notifier) fail(nt Notice, reason string, err error) {
	n.log(nt).WithError(err).WithField("reason", reason).Error("notification not sent")
	n.cfg.Failures.NotificationFailed(string(nt.Kind), reason)
}

// log names the user and the kind; never the address or the text.
func (n *Notifier) log(nt Notice) logrus.FieldLogger {
	return n.cfg.Logger.WithFields(logrus.Fields{"user_id": nt.UserID, "notification": string(nt.Kind)})
}

type noCounter struct{}

func (noCounter) NotificationFailed(string, string) {}
