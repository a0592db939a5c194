// Package smtptest runs a real SMTP server (emersion/go-smtp) on a random loopback port for tests:
// it keeps every delivered message, parsed enough to read To, Subject and the text body, lets a
// test wait for the next message to an address, and can be stopped to simulate an outage.
package smtptest
