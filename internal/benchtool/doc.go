// Package benchtool measures matrix-2fa against a loopback Dendrite, nginx
// (alone and with the generated split-routing configuration) and a bare Go
// reverse proxy, and prints every ratio of issue 14's table from one run.
package benchtool
