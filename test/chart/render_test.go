package chart

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// renderCase is one `helm install` the chart must render, with what must
// hold for it beyond the invariants every render satisfies.
type renderCase struct {
	name  string
	in    install
	check func(t *testing.T, r *rendered)
}

const nlbPrefix = "service.beta.kubernetes.io/aws-load-balancer-"

// renderCases covers the default values and each non-default layout the
// docs describe. applyCases in apply_test.go sends the same ones to a real
// API server.
func renderCases() []renderCase {
	return []renderCase{
		{name: "defaults", in: install{Release: "meshgate", Namespace: "meshgate-system"}, check: checkDefaults},
		{
			name:  "aws-nlb",
			in:    install{Release: "meshgate", Namespace: "ingress", ValueFiles: []string{"charts/meshgate/ci/nlb-values.yaml"}},
			check: checkNLB,
		},
		{
			name:  "bare-metal",
			in:    install{Release: "edge", Namespace: "edge", ValueFiles: []string{"charts/meshgate/ci/bare-metal-values.yaml"}},
			check: checkBareMetal,
		},
		{
			name:  "everything-optional",
			in:    install{Release: "prod", Namespace: "meshgate-system", ValueFiles: []string{"charts/meshgate/ci/full-values.yaml"}},
			check: checkFull,
		},
		{
			name:  "gateway-api",
			in:    install{Release: "gw", Namespace: "gw", APIVersions: []string{"gateway.networking.k8s.io/v1/GatewayClass"}},
			check: checkGatewayAPI,
		},
		{
			name: "minimal",
			in: install{Release: "mini", Namespace: "mini", Set: []string{
				"replicaCount=1", "controller.httpEnabled=false", "controller.leaderElect=false",
				"controller.publishService=false", "networkPolicy.enabled=false",
				"podDisruptionBudget.enabled=false", "topologySpread.enabled=false",
				"ingressClass.create=false", "serviceAccount.create=false", "service.type=ClusterIP",
			}},
			check: checkMinimal,
		},
		{
			name:  "admin-token",
			in:    install{Release: "meshgate", Namespace: "meshgate-system", Set: []string{"adminToken.existingSecret=meshgate-admin"}},
			check: checkAdminToken,
		},
		{
			name:  "kv-zones",
			in:    install{Release: "meshgate", Namespace: "meshgate-system", ValueFiles: []string{kvValuesFile}},
			check: checkKVZones,
		},
		{
			name:  "namespaced",
			in:    install{Release: "team", Namespace: "team-a", Set: []string{"controller.namespaced=true"}},
			check: checkNamespaced,
		},
	}
}

// checkAdminToken: adminToken.existingSecret mounts the Secret's key
// `token` read-only and passes the file as --admin-token-file (the revoke
// endpoint's bearer token); the chart creates no Secret. Without it
// (checkDefaults) there is no flag and no volume.
func checkAdminToken(t *testing.T, r *rendered) {
	spec := one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec
	c := spec.Containers[0]
	file := argValue2(c.Args, "admin-token-file")
	if file != "/etc/meshgate/admin/token" {
		t.Fatalf("--admin-token-file=%q", file)
	}
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if strings.HasPrefix(file, c.VolumeMounts[i].MountPath+"/") {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly {
		t.Fatalf("no read-only mount holds %s: %+v", file, c.VolumeMounts)
	}
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == mount.Name {
			vol = &spec.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != "meshgate-admin" {
		t.Fatalf("volume %q is not the Secret meshgate-admin: %+v", mount.Name, vol)
	}
	if len(vol.Secret.Items) != 1 || vol.Secret.Items[0].Key != "token" || mount.MountPath+"/"+vol.Secret.Items[0].Path != file {
		t.Errorf("Secret items %+v do not put the key token at %s", vol.Secret.Items, file)
	}
	if m := vol.Secret.DefaultMode; m == nil || *m&0o077 != 0 {
		t.Errorf("token file mode %v readable by others", m)
	}
	if len(r.find("Secret")) != 0 {
		t.Error("the chart created a Secret: it must never hold the token")
	}
}

// checkNamespaced: controller.namespaced watches the release namespace
// only, and no Secret (nor any other namespaced input) is readable
// cluster-wide; TestRBAC checks the grants themselves.
func checkNamespaced(t *testing.T, r *rendered) {
	args := one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args
	if got := argValue2(args, "watch-namespace"); got != "team-a" {
		t.Errorf("--watch-namespace=%q, want team-a", got)
	}
	for g := range grantsOf(t, typedRules(t, r.find("ClusterRole"))) {
		if !clusterScoped[g.resource] {
			t.Errorf("namespaced mode grants %s cluster-wide", g)
		}
	}
}

// TestRender renders every case (the documented commands included) and
// checks the invariants, then the case's own expectations.
func TestRender(t *testing.T) {
	for _, tc := range allCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.in)
			checkInvariants(t, tc.in, r)
			tc.check(t, r)
		})
	}
}

// TestRenderRejects: values that cannot work fail the render (template
// checks or values.schema.json) instead of producing a broken install.
func TestRenderRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"proxy protocol without trusted proxies", []string{"proxyProtocol.enabled=true"}, "trustedProxies"},
		{"nlb needs a LoadBalancer Service", []string{"service.aws.nlb.enabled=true", "service.type=NodePort"}, "LoadBalancer"},
		{"unknown session mode", []string{"controller.sessionMode=Sticky"}, "sessionMode"},
		{"zero replicas", []string{"replicaCount=0"}, "replicaCount"},
		{"typo in a key", []string{"replicas=3"}, "replicas"},
		{"bad trusted proxy", []string{"proxyProtocol.enabled=true", "proxyProtocol.trustedProxies={10.0.0.1}"}, "trustedProxies"},
		{"bad NLB scheme", []string{"service.aws.nlb.enabled=true", "service.aws.nlb.scheme=public"}, "scheme"},
		{"bad l4 configmap", []string{"controller.l4ConfigMap=just-a-name"}, "l4ConfigMap"},
		{"l4 ports without a configmap", []string{"l4Ports[0].name=pg", "l4Ports[0].protocol=TCP", "l4Ports[0].port=15432", "l4Ports[0].servicePort=5432"}, "l4ConfigMap"},
		{"l4 port below 1025", []string{"controller.l4ConfigMap=a/b", "l4Ports[0].name=dns", "l4Ports[0].protocol=UDP", "l4Ports[0].port=53", "l4Ports[0].servicePort=53"}, "port"},
		{"kv zone listed twice", []string{"kv.zones[0].name=s", "kv.zones[1].name=s"}, "listed twice"},
		{"kv zone without a name", []string{"kv.zones[0].ttl=10m"}, "name"},
		{"kv zone name with a slash", []string{"kv.zones[0].name=a/b"}, "name"},
		{"kv zone ttl not a duration", []string{"kv.zones[0].name=s", "kv.zones[0].ttl=soon"}, "ttl"},
		{"kv zone maxBytes not a size", []string{"kv.zones[0].name=s", "kv.zones[0].maxBytes=lots"}, "maxBytes"},
		{"kv zone maxBytes zero", []string{"kv.zones[0].name=s", "kv.zones[0].maxBytes=0"}, "maxBytes"},
		{"l4 port named like a listener", []string{"controller.l4ConfigMap=a/b", "l4Ports[0].name=mesh", "l4Ports[0].protocol=TCP", "l4Ports[0].port=17946", "l4Ports[0].servicePort=7946"}, "taken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(install{Release: "meshgate", Namespace: "meshgate-system", Set: tc.set})
			if err == nil {
				t.Fatalf("render succeeded, want an error mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// checkInvariants holds for every render: the pieces that must agree with
// each other (flags, ports, names, selectors, drain timing) do.
func checkInvariants(t *testing.T, in install, r *rendered) {
	t.Helper()
	dep := one[appsv1.Deployment](t, r, "Deployment")
	if dep.Namespace != in.Namespace {
		t.Errorf("Deployment namespace %q, want %q", dep.Namespace, in.Namespace)
	}
	pod := dep.Spec.Template
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
		t.Fatalf("Deployment selector %v does not match its pods %v (%v)", dep.Spec.Selector, pod.Labels, err)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("args %q do not start with the run command", c.Args)
	}
	args := c.Args[1:]
	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name] = p
	}

	// Listeners: each address flag's port is the container port of that name.
	for flag, name := range map[string]string{"https-addr": "https", "metrics-addr": "metrics", "mesh-addr": "mesh"} {
		checkAddrPort(t, args, flag, ports, name)
	}
	if httpAddr, _ := argValue(args, "http-addr"); httpAddr != "" {
		checkAddrPort(t, args, "http-addr", ports, "http")
	} else if _, ok := ports["http"]; ok {
		t.Error("http container port without an HTTP listener")
	}
	http3 := argValue2(args, "http3") == "true"
	if udp, ok := ports["https-udp"]; ok != http3 || (ok && (udp.Protocol != corev1.ProtocolUDP || udp.ContainerPort != ports["https"].ContainerPort)) {
		t.Errorf("UDP twin port %+v with --http3=%v: want it exactly when HTTP/3 is on, on the HTTPS port", udp, http3)
	}
	if v, _ := argValue(args, "node-name"); v != "$(POD_NAME)" || !hasFieldEnv(c, "POD_NAME", "metadata.name") {
		t.Errorf("--node-name=%q, want $(POD_NAME) from metadata.name", v)
	}

	// Probes on the metrics listener.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe %+v, want GET %s on port metrics", p.name, p.probe, p.path)
		}
	}

	// Drain: preStop sleep, then SIGTERM and --shutdown-grace, within the
	// termination grace period.
	grace, err := time.ParseDuration(argValue2(args, "shutdown-grace"))
	if err != nil {
		t.Fatalf("--shutdown-grace: %v", err)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("no preStop sleep")
	}
	sleep := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	tgp := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if sleep <= 0 || tgp <= sleep+grace {
		t.Errorf("terminationGracePeriod %v must exceed preStop %v + shutdown grace %v", tgp, sleep, grace)
	}

	// Non-root, read-only, no capabilities.
	psc, sc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc == nil || sc.ReadOnlyRootFilesystem == nil ||
		!*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("pod security context %+v / container %+v is not non-root, read-only, drop ALL", psc, sc)
	}

	// Mesh discovery: --mesh-service names the rendered headless Service,
	// which selects our pods and publishes the port named "mesh".
	meshNS, meshName := splitNN(t, argValue2(args, "mesh-service"))
	mesh := byName[corev1.Service](t, r, "Service", meshName)
	if meshNS != in.Namespace || mesh.Spec.ClusterIP != corev1.ClusterIPNone || !selects(mesh.Spec.Selector, pod.Labels) {
		t.Errorf("mesh Service %s/%s: clusterIP %q selector %v, want headless in %s selecting the pods", meshNS, meshName, mesh.Spec.ClusterIP, mesh.Spec.Selector, in.Namespace)
	}
	if len(mesh.Spec.Ports) != 1 || mesh.Spec.Ports[0].Name != "mesh" || mesh.Spec.Ports[0].Port != ports["mesh"].ContainerPort {
		t.Errorf("mesh Service ports %+v, want only \"mesh\" on %d", mesh.Spec.Ports, ports["mesh"].ContainerPort)
	}
	if caNS, _ := splitNN(t, argValue2(args, "mesh-ca-secret")); caNS != in.Namespace {
		t.Errorf("--mesh-ca-secret in namespace %q, want the release namespace %q", caNS, in.Namespace)
	}

	// The public Service targets container ports that exist, and
	// --publish-service (when set) names it.
	pub := publicService(t, r, meshName)
	for _, p := range pub.Spec.Ports {
		cp, ok := ports[p.TargetPort.String()]
		if !ok || cp.Protocol != p.Protocol {
			t.Errorf("Service port %s targets %q/%s: no such container port", p.Name, p.TargetPort.String(), p.Protocol)
		}
	}
	if !selects(pub.Spec.Selector, pod.Labels) {
		t.Errorf("Service %s does not select the pods", pub.Name)
	}
	if v, ok := argValue(args, "publish-service"); ok && v != in.Namespace+"/"+pub.Name {
		t.Errorf("--publish-service=%s, want %s/%s", v, in.Namespace, pub.Name)
	}

	// PROXY protocol: meshgate and the NLB agree.
	pp := argValue2(args, "proxy-protocol") == "true"
	if pp {
		if tp, _ := argValue(args, "trusted-proxies"); tp == "" {
			t.Error("--proxy-protocol without --trusted-proxies")
		} else {
			for _, c := range strings.Split(tp, ",") {
				if _, _, err := net.ParseCIDR(c); err != nil {
					t.Errorf("--trusted-proxies: %v", err)
				}
			}
		}
	}
	if pub.Annotations[nlbPrefix+"type"] != "" {
		if got := pub.Annotations[nlbPrefix+"proxy-protocol"] == "*"; got != pp {
			t.Errorf("NLB proxy-protocol annotation %v but --proxy-protocol=%v", got, pp)
		}
	}

	// Optional pieces that must point at the right things when present.
	if ics := r.find("IngressClass"); len(ics) == 1 {
		ic := typed[networkingv1.IngressClass](t, ics[0])
		if ic.Spec.Controller != "meshgate.io/ingress-controller" || argValue2(args, "ingress-class") != ic.Name {
			t.Errorf("IngressClass %s controller %s vs --ingress-class=%s", ic.Name, ic.Spec.Controller, argValue2(args, "ingress-class"))
		}
	}
	for _, o := range r.find("PodDisruptionBudget") {
		pdb := typed[policyv1.PodDisruptionBudget](t, o)
		s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !s.Matches(labels.Set(pod.Labels)) {
			t.Errorf("PDB selector %v does not match the pods", pdb.Spec.Selector)
		}
	}
	for _, o := range r.find("NetworkPolicy") {
		var trusted []string
		if pp {
			tp, _ := argValue(args, "trusted-proxies")
			trusted = strings.Split(tp, ",")
		}
		checkNetworkPolicy(t, typed[networkingv1.NetworkPolicy](t, o), pod.Labels, ports, trusted)
	}
	if sa := pod.Spec.ServiceAccountName; len(r.find("ServiceAccount")) == 1 {
		byName[corev1.ServiceAccount](t, r, "ServiceAccount", sa)
	}
	for _, o := range r.Objects {
		if ns := o.GetNamespace(); ns != "" && ns != in.Namespace {
			t.Errorf("%s %s in namespace %s, want %s", o.GetKind(), o.GetName(), ns, in.Namespace)
		}
	}
}

// checkNetworkPolicy: the mesh port is reachable only from our pods; the
// metrics port never from everyone; with PROXY protocol on (trusted is
// --trusted-proxies), the TCP traffic ports only from those ranges, since
// any other source inside them could write its own PROXY header; every
// rule names its ports and no port is in two rules.
func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, podLabels map[string]string, ports map[string]corev1.ContainerPort, trusted []string) {
	t.Helper()
	if !selects(np.Spec.PodSelector.MatchLabels, podLabels) {
		t.Errorf("NetworkPolicy selects %v, not the pods", np.Spec.PodSelector.MatchLabels)
	}
	seen := map[string]bool{}
	meshRules := 0
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("NetworkPolicy rule %+v opens every port (the mesh included)", rule)
		}
		var names []string
		for _, p := range rule.Ports {
			name := p.Port.String()
			for n, cp := range ports {
				if p.Port.IntValue() == int(cp.ContainerPort) && cp.Protocol == *p.Protocol {
					name = n
				}
			}
			key := name + "/" + string(*p.Protocol)
			if seen[key] {
				t.Errorf("port %s in two NetworkPolicy rules", key)
			}
			seen[key] = true
			names = append(names, name)
		}
		switch {
		case slices.Contains(names, "mesh"):
			meshRules++
			if len(rule.Ports) != 1 || len(rule.From) != 1 || rule.From[0].PodSelector == nil ||
				rule.From[0].NamespaceSelector != nil || rule.From[0].IPBlock != nil ||
				!maps.Equal(rule.From[0].PodSelector.MatchLabels, selectorOf(np)) {
				t.Errorf("mesh rule %+v: want only our pods (%v) on the mesh port alone", rule, selectorOf(np))
			}
		case slices.Contains(names, "metrics"):
			if len(rule.Ports) != 1 || len(rule.From) == 0 {
				t.Errorf("metrics rule %+v: want the metrics port alone, from named peers only", rule)
			}
		default:
			tcp := *rule.Ports[0].Protocol == corev1.ProtocolTCP
			for _, p := range rule.Ports {
				if (*p.Protocol == corev1.ProtocolTCP) != tcp {
					t.Errorf("traffic rule %+v mixes TCP and UDP ports", rule)
				}
			}
			var from []string
			for _, f := range rule.From {
				if f.IPBlock == nil || f.PodSelector != nil || f.NamespaceSelector != nil {
					t.Errorf("traffic rule peer %+v: want ipBlocks only", f)
					continue
				}
				from = append(from, f.IPBlock.CIDR)
			}
			if want := trusted; tcp && !slices.Equal(from, want) {
				t.Errorf("TCP traffic ports %v admit %v, want %v (the PROXY sources)", names, from, want)
			}
			if !tcp && len(from) != 0 {
				t.Errorf("UDP traffic ports %v admit only %v: they carry no PROXY header", names, from)
			}
		}
	}
	if meshRules != 1 {
		t.Errorf("%d NetworkPolicy rules for the mesh port, want 1", meshRules)
	}
}

func selectorOf(np *networkingv1.NetworkPolicy) map[string]string {
	return np.Spec.PodSelector.MatchLabels
}

func checkDefaults(t *testing.T, r *rendered) {
	dep := one[appsv1.Deployment](t, r, "Deployment")
	if *dep.Spec.Replicas < 3 {
		t.Errorf("default replicas %d, want ≥ 3", *dep.Spec.Replicas)
	}
	zone := false
	for _, c := range dep.Spec.Template.Spec.TopologySpreadConstraints {
		zone = zone || c.TopologyKey == "topology.kubernetes.io/zone"
	}
	if !zone {
		t.Error("no topology spread across zones")
	}
	for _, k := range []string{"PodDisruptionBudget", "NetworkPolicy", "IngressClass", "ServiceAccount", "ClusterRole", "Role"} {
		if len(r.find(k)) != 1 {
			t.Errorf("default render has %d %s, want 1 (%v)", len(r.find(k)), k, r.kinds())
		}
	}
	for _, k := range []string{"ServiceMonitor", "ConfigMap", "Secret"} {
		if len(r.find(k)) != 0 {
			t.Errorf("default render has a %s (%v)", k, r.kinds())
		}
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if _, ok := argValue(c.Args, "admin-token-file"); ok || len(dep.Spec.Template.Spec.Volumes) != 0 {
		t.Error("default render serves the admin write endpoints or mounts a volume (want: only with adminToken.existingSecret)")
	}
	if !hasResourceEnv(c, "GOMAXPROCS", "requests.cpu", "1") {
		t.Errorf("env %+v: want GOMAXPROCS from requests.cpu (divisor 1)", c.Env)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() || !c.Resources.Limits.Cpu().IsZero() {
		t.Errorf("resources %+v: want a CPU request, a memory limit and no CPU limit", c.Resources)
	}
	args := c.Args
	for flag, want := range map[string]string{
		"leader-elect": "true", "proxy-protocol": "false", "http3": "false", "ingress-class": "meshgate",
		"mesh-ca-secret": "meshgate-system/meshgate-mesh-ca", "mesh-service": "meshgate-system/meshgate-mesh",
		"publish-service": "meshgate-system/meshgate",
	} {
		if got := argValue2(args, flag); got != want {
			t.Errorf("--%s=%q, want %q", flag, got, want)
		}
	}
	svc := byName[corev1.Service](t, r, "Service", "meshgate")
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Annotations) != 0 {
		t.Errorf("default Service type %s annotations %v, want a plain LoadBalancer", svc.Spec.Type, svc.Annotations)
	}
	if ic := one[networkingv1.IngressClass](t, r, "IngressClass"); ic.Annotations[networkingv1.AnnotationIsDefaultIngressClass] != "" {
		t.Error("IngressClass is the default without being asked")
	}
	if !strings.Contains(r.Notes, "ingressClassName: meshgate") {
		t.Errorf("NOTES do not say how to use the class:\n%s", r.Notes)
	}
}

func checkNLB(t *testing.T, r *rendered) {
	svc := byName[corev1.Service](t, r, "Service", "meshgate")
	want := map[string]string{
		nlbPrefix + "type":                    "external",
		nlbPrefix + "nlb-target-type":         "ip",
		nlbPrefix + "scheme":                  "internet-facing",
		nlbPrefix + "attributes":              "load_balancing.cross_zone.enabled=true",
		nlbPrefix + "proxy-protocol":          "*",
		nlbPrefix + "target-group-attributes": "deregistration_delay.timeout_seconds=60",
		nlbPrefix + "healthcheck-protocol":    "HTTP",
		nlbPrefix + "healthcheck-port":        "9101",
		nlbPrefix + "healthcheck-path":        "/readyz",
	}
	if !maps.Equal(svc.Annotations, want) {
		t.Errorf("NLB annotations\n got %v\nwant %v", svc.Annotations, want)
	}
	// TCP and UDP share 443: the AWS Load Balancer Controller makes one
	// TCP_UDP listener of them.
	var tcp, udp int32
	for _, p := range svc.Spec.Ports {
		switch {
		case p.Name == "https" && p.Protocol == corev1.ProtocolTCP:
			tcp = p.Port
		case p.Name == "https-udp" && p.Protocol == corev1.ProtocolUDP:
			udp = p.Port
		}
	}
	if tcp != 443 || udp != 443 {
		t.Errorf("https TCP port %d, UDP port %d, want both 443", tcp, udp)
	}
	args := one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args
	if argValue2(args, "proxy-protocol") != "true" || argValue2(args, "trusted-proxies") != "10.0.0.0/8" || argValue2(args, "http3") != "true" {
		t.Errorf("args %q: want PROXY protocol from 10.0.0.0/8 and HTTP/3", args)
	}
	// The NLB must stop sending before the pod stops serving.
	dep := one[appsv1.Deployment](t, r, "Deployment")
	if dep.Spec.Template.Spec.TopologySpreadConstraints[0].WhenUnsatisfiable != corev1.DoNotSchedule {
		t.Error("NLB values do not force the zone spread")
	}
}

func checkBareMetal(t *testing.T, r *rendered) {
	svc := byName[corev1.Service](t, r, "Service", "edge-meshgate")
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("Service type %s policy %s, want NodePort/Local", svc.Spec.Type, svc.Spec.ExternalTrafficPolicy)
	}
	got := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		got[p.Name] = p.NodePort
	}
	if want := map[string]int32{"https": 30443, "http": 30080}; !maps.Equal(got, want) {
		t.Errorf("node ports %v, want %v", got, want)
	}
	if len(svc.Annotations) != 0 {
		t.Errorf("bare-metal Service has annotations %v", svc.Annotations)
	}
}

func checkFull(t *testing.T, r *rendered) {
	dep := byName[appsv1.Deployment](t, r, "Deployment", "edge")
	args := dep.Spec.Template.Spec.Containers[0].Args
	for flag, want := range map[string]string{
		"mesh-ca-secret": "meshgate-system/my-mesh-ca", "ingress-class": "edge", "session-mode": "TicketKeys",
		"l4-configmap": "meshgate-system/l4-services", "default-certificate": "meshgate-system/wildcard-tls", "log-level": "debug", "cluster-id": "prod-eu",
		"shutdown-grace": "45s",
	} {
		if got := argValue2(args, flag); got != want {
			t.Errorf("--%s=%q, want %q", flag, got, want)
		}
	}
	if *dep.Spec.Template.Spec.TerminationGracePeriodSeconds != 70 {
		t.Errorf("terminationGracePeriodSeconds %d, want 20+45+5", *dep.Spec.Template.Spec.TerminationGracePeriodSeconds)
	}
	if ic := one[networkingv1.IngressClass](t, r, "IngressClass"); ic.Annotations[networkingv1.AnnotationIsDefaultIngressClass] != "true" {
		t.Error("IngressClass not marked default")
	}
	sm := r.find("ServiceMonitor")
	if len(sm) != 1 || sm[0].GetLabels()["release"] != "prometheus" {
		t.Fatalf("ServiceMonitor %v", sm)
	}
	eps, _, _ := unstructuredSlice(sm[0].Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != "metrics" {
		t.Errorf("ServiceMonitor endpoints %v, want the metrics port", eps)
	}
	metrics := byName[corev1.Service](t, r, "Service", "edge-metrics")
	if metrics.Spec.Type != corev1.ServiceTypeClusterIP || metrics.Spec.Ports[0].Name != "metrics" {
		t.Errorf("metrics Service %+v", metrics.Spec)
	}
	cm := one[corev1.ConfigMap](t, r, "ConfigMap")
	var dash struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["meshgate-sessionmesh.json"]), &dash); err != nil || len(dash.Panels) == 0 {
		t.Errorf("dashboard ConfigMap does not hold a dashboard: %v", err)
	}
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard labels %v", cm.Labels)
	}
	// A Secret brought by the user: the chart asks for no create right.
	role := r.find("Role")
	for _, rule := range typedRules(t, role) {
		if slices.Contains(rule.Resources, "secrets") {
			t.Errorf("Role grants %v on secrets with meshCA.existingSecret set", rule.Verbs)
		}
	}
	pub := byName[corev1.Service](t, r, "Service", "edge")
	l4 := map[string]string{}
	for _, p := range pub.Spec.Ports {
		l4[p.Name] = fmt.Sprintf("%d/%s->%s", p.Port, p.Protocol, p.TargetPort.String())
	}
	if l4["postgres"] != "5432/TCP->postgres" || l4["dns"] != "53/UDP->dns" {
		t.Errorf("L4 Service ports %v", l4)
	}
	np := one[networkingv1.NetworkPolicy](t, r, "NetworkPolicy")
	open := map[string]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			open[p.Port.String()+"/"+string(*p.Protocol)] = true
		}
	}
	if !open["postgres/TCP"] || !open["dns/UDP"] {
		t.Errorf("NetworkPolicy traffic rule opens %v, want the L4 ports too", open)
	}
	if pub.Annotations["example.com/owner"] != "edge-team" || pub.Spec.LoadBalancerClass == nil ||
		*pub.Spec.LoadBalancerClass != "example.com/l4" || len(pub.Spec.LoadBalancerSourceRanges) != 1 {
		t.Errorf("Service %+v %v", pub.Spec, pub.Annotations)
	}
}

func checkMinimal(t *testing.T, r *rendered) {
	for _, k := range []string{"PodDisruptionBudget", "NetworkPolicy", "IngressClass", "ServiceAccount"} {
		if len(r.find(k)) != 0 {
			t.Errorf("minimal render has a %s", k)
		}
	}
	// No leader election: the Role only lets the mesh CA Secret be created.
	rules := typedRules(t, r.find("Role"))
	if len(rules) != 1 || !slices.Equal(rules[0].Resources, []string{"secrets"}) || !slices.Equal(rules[0].Verbs, []string{"create"}) {
		t.Errorf("Role rules %+v, want only secrets/create", rules)
	}
	dep := one[appsv1.Deployment](t, r, "Deployment")
	args := dep.Spec.Template.Spec.Containers[0].Args
	if _, ok := argValue(args, "publish-service"); ok || argValue2(args, "leader-elect") != "false" || argValue2(args, "http-addr") != "" {
		t.Errorf("args %q", args)
	}
	if dep.Spec.Template.Spec.ServiceAccountName != "default" || dep.Spec.Template.Spec.TopologySpreadConstraints != nil {
		t.Errorf("pod spec %+v", dep.Spec.Template.Spec)
	}
}

// checkAddrPort: --flag=":N" listens on all addresses at the port of the
// container port called name.
func checkAddrPort(t *testing.T, args []string, flag string, ports map[string]corev1.ContainerPort, name string) {
	t.Helper()
	v, ok := argValue(args, flag)
	host, port, err := net.SplitHostPort(v)
	if !ok || err != nil || host != "" {
		t.Errorf("--%s=%q, want :port on every address (%v)", flag, v, err)
		return
	}
	if p, _ := strconv.Atoi(port); int32(p) != ports[name].ContainerPort {
		t.Errorf("--%s port %s, but container port %q is %d", flag, port, name, ports[name].ContainerPort)
	}
}

// argValue2 is argValue without the presence flag.
func argValue2(args []string, name string) string {
	v, _ := argValue(args, name)
	return v
}

func hasResourceEnv(c corev1.Container, name, resource, divisor string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil &&
			e.ValueFrom.ResourceFieldRef.Resource == resource && e.ValueFrom.ResourceFieldRef.Divisor.String() == divisor {
			return true
		}
	}
	return false
}

func hasFieldEnv(c corev1.Container, name, path string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == path {
			return true
		}
	}
	return false
}

func splitNN(t *testing.T, s string) (string, string) {
	t.Helper()
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" {
		t.Fatalf("%q is not namespace/name", s)
	}
	return ns, name
}

// selects reports whether a Service-style selector matches labels.
func selects(sel, lbls map[string]string) bool {
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(lbls))
}

// publicService is the rendered Service that is not the mesh Service or
// the metrics Service.
func publicService(t *testing.T, r *rendered, meshName string) *corev1.Service {
	t.Helper()
	for _, o := range r.find("Service") {
		if o.GetName() != meshName && !strings.HasSuffix(o.GetName(), "-metrics") {
			return typed[corev1.Service](t, o)
		}
	}
	t.Fatal("no public Service")
	return nil
}

func unstructuredSlice(obj map[string]any, path ...string) ([]any, bool, error) {
	cur := any(obj)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false, fmt.Errorf("%v is not an object", path)
		}
		cur = m[p]
	}
	s, ok := cur.([]any)
	return s, ok, nil
}

// checkGatewayAPI: on a cluster serving the Gateway API the chart creates
// its GatewayClass; the CRDs ship in crds/ for clusters without them, and
// without the API no GatewayClass is rendered (it could not be created).
func checkGatewayAPI(t *testing.T, r *rendered) {
	gcs := r.find("GatewayClass")
	if len(gcs) != 1 {
		t.Fatalf("GatewayClasses = %d, want 1", len(gcs))
	}
	if c, _, _ := unstructured.NestedString(gcs[0].Object, "spec", "controllerName"); c != "meshgate.io/gateway-controller" || gcs[0].GetName() != "meshgate" {
		t.Errorf("GatewayClass %s controllerName %q", gcs[0].GetName(), c)
	}
	kinds := map[string]bool{}
	for _, c := range r.CRDs {
		if g, _, _ := unstructured.NestedString(c.Object, "spec", "group"); g == "gateway.networking.k8s.io" {
			k, _, _ := unstructured.NestedString(c.Object, "spec", "names", "kind")
			kinds[k] = true
		}
	}
	for _, k := range []string{"GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute", "ReferenceGrant", "BackendTLSPolicy", "ListenerSet"} {
		if !kinds[k] {
			t.Errorf("crds/ lacks the %s CRD", k)
		}
	}
	if plain := mustRender(t, install{Release: "gw", Namespace: "gw"}); len(plain.find("GatewayClass")) != 0 {
		t.Error("GatewayClass rendered for a cluster without the Gateway API")
	}
	poolArg := func(r *rendered) []string {
		var out []string
		for _, a := range one[appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Args {
			if strings.HasPrefix(a, "--gateway-address-pool") {
				out = append(out, a)
			}
		}
		return out
	}
	if got := poolArg(r); len(got) != 0 {
		t.Errorf("merged Gateways by default, but the chart passes %q", got)
	}
	pooled := mustRender(t, install{Release: "gw", Namespace: "gw", Set: []string{"gatewayAPI.addressPool=10.0.80.0/28"}})
	if got := poolArg(pooled); len(got) != 1 || got[0] != "--gateway-address-pool=10.0.80.0/28" {
		t.Errorf("gatewayAPI.addressPool rendered as %q", got)
	}
}
