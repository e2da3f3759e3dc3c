{{/* Names, labels, the catalog's stable addresses, secret references and a TOML writer. */}}

{{- define "zaqar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name; objects are named "<fullname>-<role>", so it stays short. */}}
{{- define "zaqar.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 30 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 30 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 30 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "zaqar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "zaqar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: zaqar-rs
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "api-node"). */}}
{{- define "zaqar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zaqar.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "zaqar.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "zaqar.catalog.name" -}}
{{- printf "%s-catalog" (include "zaqar.fullname" .) -}}
{{- end -}}

{{- define "zaqar.catalog.headless" -}}
{{- printf "%s-catalog-peers" (include "zaqar.fullname" .) -}}
{{- end -}}

{{/* The stable DNS name of catalog pod ORDINAL: (dict "ctx" $ "ordinal" 0). */}}
{{- define "zaqar.catalog.podHost" -}}
{{- $ctx := .ctx -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "zaqar.catalog.name" $ctx) (int .ordinal) (include "zaqar.catalog.headless" $ctx) $ctx.Release.Namespace $ctx.Values.clusterDomain -}}
{{- end -}}

{{/* gRPC endpoints of every catalog node, comma-separated (api-nodes and pool-nodes). */}}
{{- define "zaqar.catalog.endpoints" -}}
{{- $ctx := . -}}
{{- $endpoints := list -}}
{{- range $i := until (int .Values.catalog.replicas) -}}
{{- $endpoints = append $endpoints (printf "%s://%s:%d" (include "zaqar.grpcScheme" $ctx) (include "zaqar.catalog.podHost" (dict "ctx" $ctx "ordinal" $i)) (int $ctx.Values.catalog.grpcPort)) -}}
{{- end -}}
{{- join "," $endpoints -}}
{{- end -}}

{{/* The scheme of the roles' gRPC endpoints: https with internalTls. */}}
{{- define "zaqar.grpcScheme" -}}
{{- if .Values.internalTls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/*
The config tables of internal TLS for one role, as YAML to merge into its config map:
(dict "ctx" $ "role" "catalog"|"pool-node"|"api-node"). The catalog and pool-nodes serve
TLS ([tls]); pool-nodes and api-nodes check the servers they call ([grpc_tls]); with
mutual, every role shows the certificate and servers require one.
*/}}
{{- define "zaqar.internalTls" -}}
{{- $tls := .ctx.Values.internalTls -}}
{{- if $tls.enabled -}}
{{- $dir := trimSuffix "/" $tls.mountPath -}}
{{- if ne .role "api-node" }}
tls:
  cert_file: {{ printf "%s/tls.crt" $dir | quote }}
  key_file: {{ printf "%s/tls.key" $dir | quote }}
  {{- if $tls.mutual }}
  client_ca_file: {{ printf "%s/ca.crt" $dir | quote }}
  {{- end }}
{{- end }}
{{- if ne .role "catalog" }}
grpc_tls:
  ca_file: {{ printf "%s/ca.crt" $dir | quote }}
  {{- if $tls.mutual }}
  cert_file: {{ printf "%s/tls.crt" $dir | quote }}
  key_file: {{ printf "%s/tls.key" $dir | quote }}
  {{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
A role's config: its `config` values with the chart's internal TLS tables merged in
(dict "ctx" $ "role" ROLE "config" MAP "where" "catalog.config"), as YAML (fromYaml it).
*/}}
{{- define "zaqar.roleConfig" -}}
{{- $config := deepCopy (.config | default dict) -}}
{{- $tables := fromYaml (include "zaqar.internalTls" (dict "ctx" .ctx "role" .role)) | default dict -}}
{{- range $key, $_ := $tables -}}
{{- if hasKey $config $key -}}
{{- fail (printf "%s.%s is set by the chart when internalTls.enabled is true" $.where $key) -}}
{{- end -}}
{{- end -}}
{{- toYaml (merge $config $tables) -}}
{{- end -}}

{{/* The volume and the mount of the internal TLS Secret, when enabled. */}}
{{- define "zaqar.tlsVolume" -}}
{{- if .Values.internalTls.enabled }}
- name: internal-tls
  secret:
    secretName: {{ .Values.internalTls.secretName }}
{{- end }}
{{- end -}}

{{- define "zaqar.tlsMount" -}}
{{- if .Values.internalTls.enabled }}
- {name: internal-tls, mountPath: {{ .Values.internalTls.mountPath }}, readOnly: true}
{{- end }}
{{- end -}}

{{/* The raft voters of a new cluster: node id = pod ordinal + 1. */}}
{{- define "zaqar.catalog.members" -}}
{{- $ctx := . -}}
{{- $members := list -}}
{{- range $i := until (int .Values.catalog.replicas) -}}
{{- $members = append $members (printf "%d=%s:%d" (add $i 1) (include "zaqar.catalog.podHost" (dict "ctx" $ctx "ordinal" $i)) (int $ctx.Values.catalog.raftPort)) -}}
{{- end -}}
{{- join "," $members -}}
{{- end -}}

{{- define "zaqar.secretName" -}}
{{- printf "%s-secrets" (include "zaqar.fullname" .) -}}
{{- end -}}

{{/*
The secretKeyRef of one setting: (dict "ctx" $ "setting" .Values.signedUrl "key" "signed-url-secret-key"):
its existing Secret when named, else the chart's Secret.
*/}}
{{- define "zaqar.secretRef" -}}
{{- if .setting.existingSecret -}}
name: {{ .setting.existingSecret }}
key: {{ .setting.existingSecretKey }}
{{- else -}}
name: {{ include "zaqar.secretName" .ctx }}
key: {{ .key }}
{{- end -}}
{{- end -}}

{{/* A pool's weight; 100 when unset (0 is a weight: the pool takes no new queues). */}}
{{- define "zaqar.poolWeight" -}}
{{- if and (hasKey . "weight") (not (kindIs "invalid" .weight)) -}}{{ int64 .weight }}{{- else -}}100{{- end -}}
{{- end -}}

{{- define "zaqar.poolName" -}}
{{- printf "%s-pool-%s" (include "zaqar.fullname" .ctx) .pool.name -}}
{{- end -}}

{{/* The pod security context and container security context, from values. */}}
{{- define "zaqar.podSecurity" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* One TOML value: string, bool, number (integral ones as integers), or array. */}}
{{- define "zaqar.tomlValue" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "bool" $v -}}
{{- $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) -}}
{{- if eq (float64 (int64 $v)) (float64 $v) -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if kindIs "slice" $v -}}
[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "zaqar.tomlValue" $e }}{{ end }}]
{{- else -}}
{{- fail (printf "config value %v (%s) cannot be written as TOML" $v (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{/*
A map as TOML: (dict "path" "" "table" MAP). Plain keys first, then each sub-map as a
[table] (keys quoted, so any project id or name works). Null values are left out.
*/}}
{{- define "zaqar.toml" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- if $path }}
[{{ $path }}]
{{- end }}
{{- range $k, $v := $table }}
{{- if and (not (kindIs "map" $v)) (not (kindIs "invalid" $v)) }}
{{ toJson $k }} = {{ include "zaqar.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := $table }}
{{- if kindIs "map" $v }}
{{- $sub := toJson $k }}
{{- if $path }}{{ $sub = printf "%s.%s" $path (toJson $k) }}{{ end }}
{{ include "zaqar.toml" (dict "path" $sub "table" $v) }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Metrics (metrics.enabled): a container's ZAQAR_METRICS_LISTEN and `metrics` port, a Service's
`metrics` port, and the label of the Services the ServiceMonitor selects.
*/}}
{{- define "zaqar.metricsEnv" -}}
{{- if .Values.metrics.enabled -}}
- name: ZAQAR_METRICS_LISTEN
  value: "0.0.0.0:{{ .Values.metrics.port }}"
{{- end }}
{{- end -}}

{{- define "zaqar.metricsContainerPort" -}}
{{- if .Values.metrics.enabled -}}
- {name: metrics, containerPort: {{ .Values.metrics.port }}, protocol: TCP}
{{- end }}
{{- end -}}

{{- define "zaqar.metricsServicePort" -}}
{{- if .Values.metrics.enabled -}}
- {name: metrics, port: {{ .Values.metrics.port }}, targetPort: metrics, protocol: TCP}
{{- end }}
{{- end -}}

{{- define "zaqar.metricsServiceLabel" -}}
{{- if .Values.metrics.enabled -}}
zaqar-rs/metrics: "true"
{{- end }}
{{- end -}}

{{/* The NetworkPolicy ingress rule of the metrics port: metrics.allowedFrom, else the namespace. */}}
{{- define "zaqar.metricsIngress" -}}
{{- if .Values.metrics.enabled -}}
- ports:
    - {port: metrics, protocol: TCP}
  from:
    {{- if .Values.metrics.allowedFrom }}
    {{- toYaml .Values.metrics.allowedFrom | nindent 4 }}
    {{- else }}
    - podSelector: {}
    {{- end }}
{{- end }}
{{- end -}}

{{/* The Services that expose the metrics port (the job names of the ServiceMonitor's targets), "|"-joined. */}}
{{- define "zaqar.metricsServices" -}}
{{- $ctx := . -}}
{{- $names := list (printf "%s-api-metrics" (include "zaqar.fullname" .)) (include "zaqar.catalog.headless" .) -}}
{{- range .Values.pools -}}
{{- $names = append $names (include "zaqar.poolName" (dict "ctx" $ctx "pool" .)) -}}
{{- end -}}
{{- join "|" $names -}}
{{- end -}}

{{/* The PromQL label matchers of this release's series (metrics.prometheusRule.selector). */}}
{{- define "zaqar.metricsSelector" -}}
{{- .Values.metrics.prometheusRule.selector | default (printf "namespace=%q,job=~%q" .Release.Namespace (include "zaqar.metricsServices" .)) -}}
{{- end -}}

{{/* Checks the values once; every template includes it, so a bad value fails the render. */}}
{{- define "zaqar.validate" -}}
{{- $v := .Values -}}
{{- if not (has $v.auth.strategy (list "noauth" "keystone")) -}}
{{- fail (printf "auth.strategy must be noauth or keystone, not %q" $v.auth.strategy) -}}
{{- end -}}
{{- if eq $v.auth.strategy "keystone" -}}
{{- if not $v.auth.keystone.authUrl -}}
{{- fail "auth.keystone.authUrl is required with auth.strategy=keystone" -}}
{{- end -}}
{{- if not (or $v.auth.keystone.password $v.auth.keystone.existingSecret) -}}
{{- fail "auth.keystone.password or auth.keystone.existingSecret is required with auth.strategy=keystone" -}}
{{- end -}}
{{- end -}}
{{- $replicas := int $v.catalog.replicas -}}
{{- if or (lt $replicas 1) (eq (mod $replicas 2) 0) -}}
{{- fail (printf "catalog.replicas must be odd (1, 3 or 5), not %d: raft needs a majority" $replicas) -}}
{{- end -}}
{{- $mode := toString $v.catalog.podDisruptionBudget.minAvailable -}}
{{- if and $v.catalog.podDisruptionBudget.minAvailable (ne $mode "majority") (not (regexMatch "^[0-9]+%?$" $mode)) -}}
{{- fail (printf "catalog.podDisruptionBudget.minAvailable must be a number, a percentage or \"majority\", not %q" $mode) -}}
{{- end -}}
{{- if and $v.internalTls.enabled (not $v.internalTls.secretName) -}}
{{- fail "internalTls.secretName is required with internalTls.enabled (a kubernetes.io/tls Secret with ca.crt)" -}}
{{- end -}}
{{- if and $v.clusterToken.token (not (regexMatch "^[!-~]{16,}$" $v.clusterToken.token)) -}}
{{- fail "clusterToken.token must be at least 16 printable characters without spaces" -}}
{{- end -}}
{{- $m := $v.metrics -}}
{{- if $m.enabled -}}
{{- $taken := dict "apiNode.service.restPort" $v.apiNode.service.restPort "apiNode.service.wsPort" $v.apiNode.service.wsPort "apiNode.wsNotificationPort" $v.apiNode.wsNotificationPort "catalog.grpcPort" $v.catalog.grpcPort "catalog.raftPort" $v.catalog.raftPort "poolNode.grpcPort" $v.poolNode.grpcPort -}}
{{- range $key, $port := $taken -}}
{{- if eq (int $port) (int $m.port) -}}
{{- fail (printf "metrics.port %d is also %s" (int $m.port) $key) -}}
{{- end -}}
{{- end -}}
{{- else if or $m.serviceMonitor.enabled $m.prometheusRule.enabled -}}
{{- fail "metrics.serviceMonitor and metrics.prometheusRule need metrics.enabled" -}}
{{- end -}}
{{- if and $m.prometheusRule.enabled (le (int $m.prometheusRule.poolReportAgeSeconds) (mul 2 (int $v.poolNode.healthReportInterval))) -}}
{{- fail (printf "metrics.prometheusRule.poolReportAgeSeconds must exceed twice poolNode.healthReportInterval (%d s), or it fires between two reports" (int $v.poolNode.healthReportInterval)) -}}
{{- end -}}
{{- if not $v.pools -}}
{{- fail "pools must name at least one pool" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $v.pools -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$" (toString .name)) -}}
{{- fail (printf "pool name %q must be a DNS label of at most 22 characters (a-z, 0-9, '-')" (toString .name)) -}}
{{- end -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "pool %q is listed twice" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- if not (or .uri (and .uriSecret .uriSecret.name)) -}}
{{- fail (printf "pool %q needs uri or uriSecret.name" .name) -}}
{{- end -}}
{{- if and .flavor (not (regexMatch "^[a-zA-Z0-9_.-]+$" (toString .flavor))) -}}
{{- fail (printf "pool %q: flavor %q must be characters of [a-zA-Z0-9_.-]" .name .flavor) -}}
{{- end -}}
{{- if lt (int (include "zaqar.poolWeight" .)) 0 -}}
{{- fail (printf "pool %q: weight must be >= 0" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
