package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name.
const Namespace = "matrix2fa"

// Other is the label value recorded for any value outside a label's list, so that no caller can
// grow a label without bound (or put a user ID in it).
const Other = "other"

// Second-factor methods (label "method").
const (
	MethodTOTP     = "totp"
	MethodRecovery = "recovery"
	MethodEmail    = "email"
)

// Second-factor results (label "result").
const (
	ResultSuccess = "success"
	ResultInvalid = "invalid"
	ResultReplay  = "replay"
	ResultLocked  = "locked"
)

// Held-login events (label "event").
const (
	HeldStarted  = "started"
	HeldReleased = "released"
	HeldExpired  = "expired"
)

// Enrolment changes (label "change").
const (
	ChangeEnabled     = "enabled"
	ChangeDisabled    = "disabled"
	ChangeRegenerated = "regenerated"
	ChangeAdminReset  = "admin_reset"
)

// Homeserver operations (label "operation").
const (
	OpLogin         = "login"
	OpLogout        = "logout"
	OpWhoAmI        = "whoami"
	OpCheckPassword = "check_password"
	OpDeviceName    = "device_name"
	OpForward       = "forward" // an intercepted request, checked and sent on
	OpThreePIDs     = "threepids"
	OpServerNotice  = "server_notice"
	OpAdminCheck    = "admin_check"
)

// Route classes (label "route").
const (
	RoutePassthrough = "passthrough"
	RouteLogin       = "login"
	RouteGuarded     = "guarded"
	RouteTwoFactor   = "two_factor"
	RoutePage        = "page"
	RouteOther       = "other"
)

// Notification kinds (label "kind", the values of notify.Kind, plus "code" for the e-mail with
// a one-time code) and reasons (label "reason", notify's Reason constants).
var (
	notificationKinds   = []string{"enabled", "disabled", "recovery_regenerated", "recovery_used", "admin_reset", "lockout", "code"}
	notificationReasons = []string{"send_error", "queue_full", "closed", "compose"}
)

var (
	methods      = []string{MethodTOTP, MethodRecovery, MethodEmail}
	results      = []string{ResultSuccess, ResultInvalid, ResultReplay, ResultLocked}
	heldEvents   = []string{HeldStarted, HeldReleased, HeldExpired}
	changes      = []string{ChangeEnabled, ChangeDisabled, ChangeRegenerated, ChangeAdminReset}
	operations   = []string{OpLogin, OpLogout, OpWhoAmI, OpCheckPassword, OpDeviceName, OpForward, OpThreePIDs, OpServerNotice, OpAdminCheck}
	routes       = []string{RoutePassthrough, RouteLogin, RouteGuarded, RouteTwoFactor, RoutePage, RouteOther}
	statusClass  = []string{"1xx", "2xx", "3xx", "4xx", "5xx"}
	httpBuckets  = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60} // pass-through long polls reach 30 s
	upstreamBkts = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// Metrics records the gateway's events. Its methods are safe for concurrent use, and a nil
// *Metrics records nothing, so metrics can be left unwired.
type Metrics struct {
	reg *prometheus.Registry

	secondFactor  *prometheus.CounterVec
	lockouts      prometheus.Counter
	heldLogins    *prometheus.CounterVec
	uiaChallenges prometheus.Counter
	enrolment     *prometheus.CounterVec
	hsDuration    *prometheus.HistogramVec
	hsErrors      *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	notifyFailed  *prometheus.CounterVec
}

// New returns Metrics on a registry of their own (not Prometheus' global one), with the Go
// runtime and process collectors, and every known label combination present at zero.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		secondFactor: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "second_factor_attempts_total",
			Help: "Second-factor checks, by method and result.",
		}, []string{"method", "result"}),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "lockouts_total",
			Help: "Users locked out of second-factor checks after too many failures.",
		}),
		heldLogins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "held_logins_total",
			Help: "Homeserver logins held behind the second factor: started, released after it, or expired and logged out.",
		}, []string{"event"}),
		uiaChallenges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "uia_challenges_total",
			Help: "User-interactive authentication challenges (401 with flows) the gateway issued.",
		}),
		enrolment: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "enrolment_changes_total",
			Help: "Changes to users' second-factor enrolment.",
		}, []string{"change"}),
		hsDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "homeserver_request_duration_seconds",
			Help:    "Time the homeserver took to answer the gateway's own calls, by operation.",
			Buckets: upstreamBkts,
		}, []string{"operation"}),
		hsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "homeserver_errors_total",
			Help: "The gateway's calls to the homeserver that failed (no answer, or an unexpected one), by operation.",
		}, []string{"operation"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "http_request_duration_seconds",
			Help:    "Time to answer client requests, by route class and status class.",
			Buckets: httpBuckets,
		}, []string{"route", "status"}),
		notifyFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "notification_failures_total",
			Help: "Notifications to users that were not delivered, by kind and reason.",
		}, []string{"kind", "reason"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.secondFactor, m.lockouts, m.heldLogins, m.uiaChallenges, m.enrolment,
		m.hsDuration, m.hsErrors, m.httpDuration, m.notifyFailed,
	)
	m.initSeries()
	return m
}

// initSeries creates every known label combination at zero, so that rates work from the start.
func (m *Metrics) initSeries() {
	for _, method := range methods {
		for _, result := range results {
			m.secondFactor.WithLabelValues(method, result)
		}
	}
	for _, e := range heldEvents {
		m.heldLogins.WithLabelValues(e)
	}
	for _, c := range changes {
		m.enrolment.WithLabelValues(c)
	}
	for _, op := range operations {
		m.hsDuration.WithLabelValues(op)
		m.hsErrors.WithLabelValues(op)
	}
	for _, k := range notificationKinds {
		for _, r := range notificationReasons {
			m.notifyFailed.WithLabelValues(k, r)
		}
	}
}

// Handler serves the metrics in Prometheus' text format (for GET /metrics). For a nil *Metrics
// it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// SecondFactorAttempt records one check of a second factor: method is a Method constant,
// result a Result constant.
func (m *Metrics) SecondFactorAttempt(method, result string) {
	if m == nil {
		return
	}
	m.secondFactor.WithLabelValues(known(method, methods), known(result, results)).Inc()
}

// Lockout records that a user was locked out of second-factor checks.
func (m *Metrics) Lockout() {
	if m == nil {
		return
	}
	m.lockouts.Inc()
}

// HeldLogin records an event (a Held constant) of a login held behind the second factor.
func (m *Metrics) HeldLogin(event string) {
	if m == nil {
		return
	}
	m.heldLogins.WithLabelValues(known(event, heldEvents)).Inc()
}

// UIAChallenge records one user-interactive authentication challenge issued.
func (m *Metrics) UIAChallenge() {
	if m == nil {
		return
	}
	m.uiaChallenges.Inc()
}

// EnrolmentChange records a change (a Change constant) of a user's enrolment.
func (m *Metrics) EnrolmentChange(change string) {
	if m == nil {
		return
	}
	m.enrolment.WithLabelValues(known(change, changes)).Inc()
}

// HomeserverCall records one call of the gateway's own to the homeserver: its operation (an Op
// constant), how long it took, and whether it failed (err != nil).
func (m *Metrics) HomeserverCall(operation string, took time.Duration, err error) {
	if m == nil {
		return
	}
	op := known(operation, operations)
	m.hsDuration.WithLabelValues(op).Observe(took.Seconds())
	if err != nil {
		m.hsErrors.WithLabelValues(op).Inc()
	}
}

// HTTPRequest records one answered client request: its route class (a Route constant), the
// HTTP status code sent, and how long it took.
func (m *Metrics) HTTPRequest(route string, status int, took time.Duration) {
	if m == nil {
		return
	}
	m.httpDuration.WithLabelValues(known(route, routes), classOf(status)).Observe(took.Seconds())
}

// NotificationFailed records a notification that was not delivered: its kind (a notify.Kind,
// or "code") and why (a notify Reason constant). It satisfies notify.FailureCounter.
func (m *Metrics) NotificationFailed(kind, reason string) {
	if m == nil {
		return
	}
	m.notifyFailed.WithLabelValues(known(kind, notificationKinds), known(reason, notificationReasons)).Inc()
}

// known returns v if it is one of list, Other otherwise.
func known(v string, list []string) string {
	for _, s := range list {
		if v == s {
			return v
		}
	}
	return Other
}

// classOf returns "2xx" and so on for a status code, Other outside 100-599.
func classOf(status int) string {
	if status < 100 || status > 599 {
		return Other
	}
	return strconv.Itoa(status/100) + "xx"
}
