package dendrite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Halt stops the running process as Stop does (SIGTERM, SIGKILL after 10
// seconds) but keeps the directory and the log open, for a restart with
// Resume: a homeserver outage in a test. It returns an error if the process
// had already exited or had to be killed.
func (s *Server) Halt() error {
	select {
	case <-s.done:
		return fmt.Errorf("dendrite: exited before Halt: %v", s.waitErr)
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(10 * time.Second):
		s.kill()
		return errors.New("dendrite: did not exit within 10s of SIGTERM; killed")
	}
}

// Resume starts Dendrite again after Halt, on the same address (URL does not
// change, so whatever points at it reconnects) with the same directory, so
// accounts, devices and access tokens are kept; binDir holds the binaries as
// for Start. It waits up to readyTimeout (60 seconds when zero) for
// GET /_matrix/client/versions to answer 200. Errors include the log's tail.
func (s *Server) Resume(ctx context.Context, binDir string, readyTimeout time.Duration) error {
	select {
	case <-s.done:
	default:
		return errors.New("dendrite: Resume while still running (call Halt first)")
	}
	if readyTimeout == 0 {
		readyTimeout = 60 * time.Second
	}
	addr := strings.TrimPrefix(s.URL, "http://")
	logStart, _ := s.log.Seek(0, io.SeekEnd)
	cmd := exec.Command(filepath.Join(binDir, "dendrite"),
		"--config", filepath.Join(s.Dir, ConfigFile),
		"--http-bind-address", addr,
		"--really-enable-open-registration",
	)
	cmd.Dir = s.Dir
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	setProcAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dendrite: restart: %w", err)
	}
	s.cmd = cmd
	done := make(chan struct{})
	s.done = done
	s.waitErr = nil
	go func() {
		s.waitErr = cmd.Wait()
		close(done)
	}()
	if err := s.waitReady(ctx, readyTimeout); err != nil {
		s.kill()
		return fmt.Errorf("%w; log %s ends with:\n%s", err, s.LogPath, tail(s.logSince(logStart), 30))
	}
	return nil
}
