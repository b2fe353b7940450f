// Package nodeagent is the test cluster's node: a small stand-in for the
// kubelet and the scheduler, so that a real kube-apiserver and
// kube-controller-manager (Deployments → ReplicaSets → Pods, EndpointSlices)
// run real workloads without a container runtime.
//
// The agent registers one Node, binds every unscheduled Pod to it (it is the
// cluster's only scheduler), and runs each Pod bound to it:
//
//   - a network namespace per Pod, joined by a veth pair to a host bridge
//     that holds the first address of the Pod range (198.18.128.0/17 by
//     default, inside the 198.18.0.0/15 benchmarking range); the Pod gets the
//     next free address, so the host reaches every Pod IP directly;
//   - a root directory per Pod holding the stand-in binary of each
//     container's image and the Pod's volumes (secret, configMap, emptyDir,
//     downwardAPI, projected) at their mount paths; each container runs as a
//     process chrooted there, inside the Pod's network namespace, with the
//     environment the Pod spec gives (env, envFrom, downward-API fields);
//   - readiness from the container's readinessProbe (httpGet, tcpSocket),
//     else from its declared containerPorts being bound, else from the
//     process having bound any socket; the Pod is reported Running and Ready
//     with podIP set, as a kubelet would;
//   - deletion: a Pod with a deletionTimestamp has its processes stopped
//     (SIGTERM, then SIGKILL after the grace period, capped), its namespace
//     removed, and is then deleted for good (grace 0), as a kubelet does.
//
// Images map to binaries (Config.Images): the agent pulls nothing. A
// container whose image has no stand-in stays Waiting with reason
// ErrImagePull and a message naming the image.
//
// The agent also serves the kubelet's containerLogs endpoint over HTTPS
// (certificate from its own CA, see Agent.CAFile), so `kubectl logs` and the
// pods/log subresource work through the API server.
//
// What is deliberately not emulated (and documented in
// docs/conformance/README.md): cluster DNS, kube-proxy (Service ClusterIPs
// are not routed; consumers use EndpointSlices), service-account tokens,
// liveness and startup probes, exec and port-forward, init containers,
// host networking, resource limits and a separate UTS or mount namespace.
//
// Everything the agent creates on the host carries its name prefix (Network
// .Prefix): at start it removes what a crashed run left behind (processes in
// those namespaces, the namespaces, links and the bridge) before creating
// anything. Network namespaces and the Pod range are shared by every
// worktree of the machine: run the agent only under the heavy-test lock
// (flock /tmp/meshgate-heavy.lock). Needs root and iproute2.
package nodeagent
