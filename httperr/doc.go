// Package httperr is the one table from errors to what a client sees: a
// Matrix error (status, errcode, error) for the API and a sentence for the
// HTML pages, with waits and Retry-After worked out in one place.
package httperr
