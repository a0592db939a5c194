package dendrite

import (
	"os/exec"
	"syscall"
)

// setProcAttrs makes the kernel kill Dendrite if this process dies without
// calling Stop (for example when go test times out), so no server is orphaned.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
