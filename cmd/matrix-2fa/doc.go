// Command matrix-2fa is the two-factor authentication gateway's binary: it
// serves the gateway in front of a Matrix homeserver, writes a commented
// configuration file, and runs the operator's admin commands. Wiring only.
package main
