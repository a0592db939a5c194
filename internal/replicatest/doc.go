// Package replicatest runs matrix-2fa as it is deployed at scale: several
// gateway processes on one PostgreSQL database behind a real nginx, in front
// of a real Dendrite, and tests them under contention, crashes, outages and a soak.
package replicatest
