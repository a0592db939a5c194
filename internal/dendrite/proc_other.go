//go:build !linux

package dendrite

import "os/exec"

func setProcAttrs(cmd *exec.Cmd) {}
