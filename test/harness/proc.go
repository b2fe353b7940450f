package harness

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is one started process (and its process group). Its methods are not
// safe for concurrent use.
type Proc struct {
	Name    string
	LogPath string // combined stdout+stderr
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	killed  bool // the group was SIGKILLed; never signal a possibly recycled pgid again
}

// Start runs bin with args in a new process group, output appended to
// dir/name.log, and registers a cleanup with t that kills the group.
func Start(t T, dir, name, bin string, args ...string) (*Proc, error) {
	t.Helper()
	return StartEnv(t, nil, dir, name, bin, args...)
}

// StartEnv is Start with env added to the inherited environment.
func StartEnv(t T, env []string, dir, name, bin string, args ...string) (*Proc, error) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
		fmt.Fprintf(f, "=== env %s\n", strings.Join(env, " "))
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.Kill() })
	return p, nil
}

// PID returns the process id (also its process group id).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL to the whole process group and waits (bounded) for the
// leader to be reaped. Calling it again is harmless.
func (p *Proc) Kill() {
	if p.killed {
		return
	}
	p.killed = true
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// Stop sends SIGTERM to the leader and waits up to grace for it to exit,
// then kills the group. It returns the leader's exit error (nil for exit 0).
func (p *Proc) Stop(grace time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		p.Kill() // stray children
		return p.waitErr
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM", p.Name, grace)
	}
}

// Tail returns up to the last n bytes of the process log, for failure
// messages.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// CPUTicks returns utime+stime (in clock ticks, USER_HZ = 100 on Linux) of
// every live process in p's process group, workers included.
func (p *Proc) CPUTicks() (int64, error) {
	return GroupCPUTicks(p.PID())
}

// GroupCPUTicks sums utime+stime over the live processes of process group
// pgid, read from /proc/<pid>/stat.
func GroupCPUTicks(pgid int) (int64, error) {
	procs, err := groupStats(pgid)
	if err != nil {
		return 0, fmt.Errorf("cpu ticks: %w", err)
	}
	var total int64
	for _, ps := range procs {
		ut, _ := strconv.ParseInt(ps.fields[11], 10, 64)
		st, _ := strconv.ParseInt(ps.fields[12], 10, 64)
		total += ut + st
	}
	return total, nil
}

// FreePort returns a port that is free for both TCP and UDP on ip at the
// time of the call (the HTTPS listener and its HTTP/3 twin share it). There
// is an unavoidable window before the caller's process binds it.
func FreePort(ip string) (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		_ = ln.Close()
		if err == nil {
			_ = pc.Close()
			return port, nil
		}
	}
	return 0, errors.New("free port: no port free for both TCP and UDP after 50 tries")
}

// FreeAddr is FreePort formatted as ip:port.
func FreeAddr(ip string) (string, error) {
	p, err := FreePort(ip)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip, strconv.Itoa(p)), nil
}

// FreeAddrs returns n distinct addresses on ip whose ports were free for
// both TCP and UDP at the time of the call. Each port is held until all n
// are found, so the kernel cannot hand the same one out twice (separate
// FreeAddr calls can: a replica once got the same port for two
// listeners); the window before the caller's process binds them remains.
func FreeAddrs(ip string, n int) ([]string, error) {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	out := make([]string, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries >= 50*n {
			return nil, fmt.Errorf("free addrs: only %d of %d ports free for both TCP and UDP on %s", len(out), n, ip)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("free addrs: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			_ = ln.Close()
			continue
		}
		held = append(held, ln, pc)
		out = append(out, net.JoinHostPort(ip, strconv.Itoa(port)))
	}
	return out, nil
}

// WaitTCP waits until addr accepts TCP connections or timeout passes.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting after %v: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
