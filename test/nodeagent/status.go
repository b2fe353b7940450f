package nodeagent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// containerImageID is what container statuses report as imageID: the
// stand-in's path, so a reader sees what ran.
func containerImageID(img Image) string { return "meshgate-nodeagent://" + img.Binary }

// pendingStatus is the status of a Pod that could not start: Pending, each
// container Waiting with the reason a kubelet would give.
func pendingStatus(pod *corev1.Pod, err error) corev1.PodStatus {
	reason := "ContainerCreating"
	var ie *imageError
	if errors.As(err, &ie) {
		reason = "ErrImagePull"
	} else if errors.Is(err, errUnsupported) {
		reason = "CreateContainerConfigError"
	}
	st := corev1.PodStatus{
		Phase: corev1.PodPending,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
			{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"},
		},
		HostIP:    pod.Status.HostIP,
		HostIPs:   pod.Status.HostIPs,
		StartTime: pod.Status.StartTime,
	}
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name:  c.Name,
			Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}},
		})
	}
	return st
}

// runningStatus is the status of a Pod the agent runs.
func (a *Agent) runningStatus(pod *corev1.Pod, st *podState) corev1.PodStatus {
	hostIP := a.HostIP().String()
	out := corev1.PodStatus{
		HostIP:    hostIP,
		HostIPs:   []corev1.HostIP{{IP: hostIP}},
		PodIP:     st.ip.String(),
		PodIPs:    []corev1.PodIP{{IP: st.ip.String()}},
		StartTime: &st.started,
	}
	allReady, running, failed, terminated := true, 0, 0, 0
	for _, c := range st.containers {
		cs, state := c.status()
		out.ContainerStatuses = append(out.ContainerStatuses, cs)
		allReady = allReady && cs.Ready
		switch state {
		case stateRunning:
			running++
		case stateTerminated:
			terminated++
			if cs.State.Terminated.ExitCode != 0 {
				failed++
			}
		}
	}
	switch {
	case terminated == len(st.containers) && pod.Spec.RestartPolicy != corev1.RestartPolicyAlways:
		out.Phase = corev1.PodSucceeded
		if failed > 0 {
			out.Phase = corev1.PodFailed
		}
	case running > 0 || terminated > 0:
		out.Phase = corev1.PodRunning
	default:
		out.Phase = corev1.PodPending
	}
	ready := corev1.ConditionFalse
	reason := "ContainersNotReady"
	if allReady {
		ready, reason = corev1.ConditionTrue, ""
	}
	out.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
		{Type: corev1.ContainersReady, Status: ready, Reason: reason},
		{Type: corev1.PodReady, Status: ready, Reason: reason},
	}
	return out
}

type containerPhase int

const (
	stateWaiting containerPhase = iota
	stateRunning
	stateTerminated
)

// status reports the container as a kubelet would.
func (c *containerState) status() (corev1.ContainerStatus, containerPhase) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := corev1.ContainerStatus{
		Name:         c.spec.Name,
		Image:        c.spec.Image,
		ImageID:      containerImageID(c.image),
		RestartCount: c.restarts,
		Ready:        c.ready,
		Started:      new(bool),
	}
	phase := stateWaiting
	switch {
	case c.proc != nil:
		*cs.Started = true
		cs.ContainerID = "meshgate-nodeagent://" + strconv.Itoa(c.proc.pid())
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.proc.started.Truncate(time.Second))}
		phase = stateRunning
	case c.waiting != "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waiting, Message: c.message}
	case c.last != nil:
		cs.State.Terminated = c.last.DeepCopy()
		phase = stateTerminated
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	if c.last != nil && phase != stateTerminated {
		cs.LastTerminationState.Terminated = c.last.DeepCopy()
	}
	return cs, phase
}

// keepTransitionTimes carries each condition's lastTransitionTime over from
// cur when its status did not change, and stamps the others now.
func keepTransitionTimes(want, cur *corev1.PodStatus) {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	for i := range want.Conditions {
		w := &want.Conditions[i]
		w.LastTransitionTime = now
		for _, c := range cur.Conditions {
			if c.Type == w.Type && c.Status == w.Status {
				w.LastTransitionTime = c.LastTransitionTime
			}
		}
	}
}

// statusEqual compares what the agent writes, and only that: the API
// server may add or normalise other fields, and comparing those would make
// every write trigger another.
func statusEqual(a, b *corev1.PodStatus) bool {
	return statusDigest(a) == statusDigest(b)
}

func statusDigest(s *corev1.PodStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|", s.Phase, s.PodIP, s.HostIP)
	for _, c := range s.Conditions {
		fmt.Fprintf(&b, "%s=%s:%s,", c.Type, c.Status, c.Reason)
	}
	for _, c := range s.ContainerStatuses {
		fmt.Fprintf(&b, "|%s ready=%t restarts=%d id=%s", c.Name, c.Ready, c.RestartCount, c.ContainerID)
		if c.Started != nil {
			fmt.Fprintf(&b, " started=%t", *c.Started)
		}
		switch st := c.State; {
		case st.Running != nil:
			b.WriteString(" running")
		case st.Waiting != nil:
			fmt.Fprintf(&b, " waiting %s %s", st.Waiting.Reason, st.Waiting.Message)
		case st.Terminated != nil:
			fmt.Fprintf(&b, " terminated %d %s", st.Terminated.ExitCode, st.Terminated.Reason)
		}
		if t := c.LastTerminationState.Terminated; t != nil {
			fmt.Fprintf(&b, " last %d %d", t.ExitCode, t.FinishedAt.Unix())
		}
	}
	return b.String()
}
