// Package config is matrix-2fa's one YAML configuration file: a struct with
// defaults for every option, loading that rejects unknown keys, a validation
// that reports every problem at once, and the commented file that
// generate-config writes.
package config
