// Package httpx is the gateway's HTTP plumbing: reading bodies (size limit,
// member names two decoders could read differently), JSON and Matrix-error
// writers with CORS, the request's access token, request-scoped loggers.
package httpx
