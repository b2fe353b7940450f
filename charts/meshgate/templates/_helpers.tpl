{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "meshgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release name, plus the chart name unless the release already contains it. */}}
{{- define "meshgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels: stable across upgrades. */}}
{{- define "meshgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels. */}}
{{- define "meshgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "meshgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: meshgate
{{- end }}

{{- define "meshgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "meshgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "meshgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Headless Service for mesh peer discovery. */}}
{{- define "meshgate.meshServiceName" -}}
{{- printf "%s-mesh" (include "meshgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Secret holding the mesh CA (ca.crt, ca.key). */}}
{{- define "meshgate.meshCASecretName" -}}
{{- default (printf "%s-mesh-ca" (include "meshgate.fullname" .) | trunc 63 | trimSuffix "-") .Values.meshCA.existingSecret }}
{{- end }}

{{/* terminationGracePeriodSeconds: preStop sleep + drain + margin. */}}
{{- define "meshgate.terminationGracePeriodSeconds" -}}
{{- add .Values.drain.preStopSleepSeconds .Values.drain.shutdownGraceSeconds .Values.drain.marginSeconds }}
{{- end }}

{{/* Annotations of the LoadBalancer Service: NLB ones from values, then the user's. */}}
{{- define "meshgate.serviceAnnotations" -}}
{{- $a := dict }}
{{- with .Values.service.aws.nlb }}
{{- if .enabled }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-type" "external" }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type" .targetType }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-scheme" .scheme }}
{{- /* Health-check meshgate's readiness, not the traffic port: a draining
       replica fails /readyz and the NLB stops picking it, and no PROXY
       header is needed on the check. */}}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol" "HTTP" }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port" ($.Values.controller.ports.metrics | toString) }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path" "/readyz" }}
{{- $attrs := prepend .attributes (printf "load_balancing.cross_zone.enabled=%t" .crossZone) }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-attributes" (join "," $attrs) }}
{{- if .targetGroupAttributes }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes" (join "," .targetGroupAttributes) }}
{{- end }}
{{- if $.Values.proxyProtocol.enabled }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol" "*" }}
{{- end }}
{{- end }}
{{- end }}
{{- range $k, $v := .Values.service.annotations }}
{{- $_ := set $a $k $v }}
{{- end }}
{{- if $a }}
{{- toYaml $a }}
{{- end }}
{{- end }}

{{/* Checks that values fit together; fails the render otherwise. */}}
{{- define "meshgate.validate" -}}
{{- if and .Values.proxyProtocol.enabled (not .Values.proxyProtocol.trustedProxies) }}
{{- fail "proxyProtocol.enabled needs proxyProtocol.trustedProxies: the load balancer's source CIDRs (for an NLB, the CIDRs of its subnets)" }}
{{- end }}
{{- if and .Values.service.aws.nlb.enabled (ne .Values.service.type "LoadBalancer") }}
{{- fail "service.aws.nlb.enabled needs service.type LoadBalancer" }}
{{- end }}
{{- if and .Values.l4Ports (not .Values.controller.l4ConfigMap) }}
{{- fail "l4Ports needs controller.l4ConfigMap: the ConfigMap that tells meshgate what to proxy on them" }}
{{- end }}
{{- range .Values.l4Ports }}
{{- if has .name (list "https" "https-udp" "http" "metrics" "mesh") }}
{{- fail (printf "l4Ports: the name %q is taken by a meshgate listener" .name) }}
{{- end }}
{{- end }}
{{- $zones := list }}
{{- range .Values.kv.zones }}
{{- if has .name $zones }}
{{- fail (printf "kv.zones: the zone %q is listed twice" .name) }}
{{- end }}
{{- $zones = append $zones .name }}
{{- end }}
{{- if lt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount must be at least 1" }}
{{- end }}
{{- end }}

{{/*
The rules of every namespaced input and output: cluster-wide in the
ClusterRole by default, in the release namespace's Role with
controller.namespaced (cluster-scoped kinds listed here then simply have no
effect in the Role; the ClusterRole grants them).
*/}}
{{- define "meshgate.namespacedRules" -}}
# Watched inputs: Services (backends, --publish-service), ConfigMaps (L4
# services), TLS Secrets (metadata informer + uncached reads).
# Namespaces: their labels select routes for Gateway listeners
# (allowedRoutes.namespaces.selector).
- apiGroups: [""]
  resources: [configmaps, services, secrets, namespaces]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, ingressclasses]
  verbs: [get, list, watch]
- apiGroups: [meshgate.io]
  resources: [tlspolicies]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses, gateways, listenersets, httproutes, grpcroutes, tlsroutes, tcproutes, udproutes, referencegrants, backendtlspolicies]
  verbs: [get, list, watch]
# Written by the leader: Gateway API status (our GatewayClasses,
# Gateways, ListenerSets, our entries of route parents and policy
# ancestors).
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses/status, gateways/status, listenersets/status, httproutes/status, grpcroutes/status, tlsroutes/status, tcproutes/status, udproutes/status, backendtlspolicies/status]
  verbs: [get, update, patch]
# Written by the leader: Ingress addresses, TLSPolicy conditions, Events
# about problems in the input (in the Ingress's namespace).
- apiGroups: [networking.k8s.io]
  resources: [ingresses/status]
  verbs: [get, update, patch]
- apiGroups: [meshgate.io]
  resources: [tlspolicies/status]
  verbs: [get, update, patch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/*
The --kv-zone flag of one kv.zones entry: name[:ttl[:maxBytes]]. A
numeric maxBytes is printed as an integer (a YAML number is a float to
Helm, and 1000000 would print as 1e+06).
*/}}
{{- define "meshgate.kvZoneArg" -}}
--kv-zone={{ .name }}
{{- if or .ttl .maxBytes }}:{{ .ttl | default "" }}{{ end }}
{{- with .maxBytes }}:{{ if kindIs "string" . }}{{ . }}{{ else }}{{ int64 . }}{{ end }}{{ end }}
{{- end }}
