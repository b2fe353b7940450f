package nodeagent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// process is one running container process (and its process group).
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has been reaped
	exit    int           // exit code (128+signal when killed); valid after done
	started time.Time
	ended   time.Time // valid after done
}

// startProcess starts argv (argv[0] a path inside root) chrooted into root,
// inside network namespace netns, in its own process group, with env and
// stdout/stderr to out. A crash of the agent's process kills it
// (Pdeathsig); a crash that escapes that is caught by the stale-state
// removal at the next start.
//
// The child inherits the network namespace of the OS thread that forks it:
// the forking goroutine locks its thread, switches it into netns, starts
// the process and switches back before unlocking. A thread that cannot
// switch back stays locked and dies with its goroutine.
func startProcess(netns, root, dir string, argv, env []string, out io.Writer) (*process, error) {
	cmd := &exec.Cmd{
		Path:   argv[0],
		Args:   argv,
		Env:    env,
		Dir:    dir,
		Stdout: out,
		Stderr: out,
		// A child that keeps the output pipe open must not hang Wait.
		WaitDelay: 2 * time.Second,
		SysProcAttr: &syscall.SysProcAttr{
			Chroot:    root,
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(netnsPath(netns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", netns, err)
			return
		}
		startErr := cmd.Start()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Keep the thread locked: it exits with this goroutine and
			// takes the process with it (Pdeathsig).
			errc <- errors.Join(startErr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- startErr
	}()
	if err := <-errc; err != nil {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_, _ = cmd.Process.Wait()
		}
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), started: time.Now()}
	go func() {
		err := cmd.Wait()
		p.ended = time.Now()
		p.exit = exitCode(cmd.ProcessState, err)
		close(p.done)
	}()
	return p, nil
}

func exitCode(st *os.ProcessState, err error) int {
	if st == nil {
		if err != nil {
			return 128
		}
		return 0
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the group, waits up to grace, then SIGKILLs the
// group and waits (bounded) for the reap.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL) // stray children
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}
