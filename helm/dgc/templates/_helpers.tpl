{{/*
Chart name, truncated to the 63 characters DNS names allow.
*/}}
{{- define "dgc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart> unless the release name already holds the chart name.
*/}}
{{- define "dgc.fullname" -}}
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

{{/*
Chart label value: name-version.
*/}}
{{- define "dgc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "dgc.labels" -}}
helm.sh/chart: {{ include "dgc.chart" . }}
{{ include "dgc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dgc
{{- end }}

{{/*
Selector labels; a component adds app.kubernetes.io/component.
*/}}
{{- define "dgc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dgc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the pods use.
*/}}
{{- define "dgc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dgc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference. Call with (dict "root" $ "override" <map with repository, tag or empty>).
*/}}
{{- define "dgc.image" -}}
{{- $o := .override | default dict }}
{{- $repo := $o.repository | default .root.Values.image.repository }}
{{- $tag := $o.tag | default .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/*
ZeroMQ endpoint of this release's coordinator (its Service, fully qualified so that
hostNetwork ingest pods resolve it too).
*/}}
{{- define "dgc.coordinatorEndpoint" -}}
{{- printf "tcp://%s-coordinator.%s.svc:%v" (include "dgc.fullname" .) .Release.Namespace .Values.coordinator.listenPort }}
{{- end }}

{{/*
Name of the Secret holding the CurveZMQ keys.
*/}}
{{- define "dgc.curveSecretName" -}}
{{- default (printf "%s-curve" (include "dgc.fullname" .)) .Values.curve.existingSecret }}
{{- end }}

{{/*
Lines of a --config file shared by every process: log level and transport security.
Call with (dict "root" $ "self" "worker"|"ingest"|"coordinator").
*/}}
{{- define "dgc.commonConfig" -}}
log-level = {{ .root.Values.logLevel | quote }}
{{- if .root.Values.curve.enabled }}
curve-secret-key-file = {{ printf "/etc/dgc/curve/%s.key" .self | quote }}
{{- if eq .self "coordinator" }}
curve-allow-dir = "/etc/dgc/curve-allow"
{{- else }}
curve-server-key-file = "/etc/dgc/curve/coordinator.pub"
{{- end }}
{{- else }}
insecure = true
{{- end }}
{{- end }}

{{/*
Volumes of a pod's CurveZMQ keys. Call with (dict "root" $ "self" "worker"|"ingest"|"coordinator").
*/}}
{{- define "dgc.curveVolumes" -}}
{{- if .root.Values.curve.enabled }}
- name: curve
  secret:
    secretName: {{ include "dgc.curveSecretName" .root }}
    defaultMode: 0440
    items:
      - key: {{ .self }}.key
        path: {{ .self }}.key
      {{- if ne .self "coordinator" }}
      - key: coordinator.pub
        path: coordinator.pub
      {{- end }}
{{- if eq .self "coordinator" }}
- name: curve-allow
  secret:
    secretName: {{ include "dgc.curveSecretName" .root }}
    defaultMode: 0444
    items:
      - key: worker.pub
        path: worker.pub
      - key: ingest.pub
        path: ingest.pub
      {{- range $name, $key := .root.Values.curve.allowedClientKeys }}
      - key: allow-{{ $name }}.pub
        path: allow-{{ $name }}.pub
      {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Volume mounts matching dgc.curveVolumes.
*/}}
{{- define "dgc.curveVolumeMounts" -}}
{{- if .root.Values.curve.enabled }}
- name: curve
  mountPath: /etc/dgc/curve
  readOnly: true
{{- if eq .self "coordinator" }}
- name: curve-allow
  mountPath: /etc/dgc/curve-allow
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/*
HTTP probe on the metrics port. Call with (dict "path" "/healthz" "timing" <values block>).
*/}}
{{- define "dgc.probe" -}}
httpGet:
  path: {{ .path }}
  port: metrics
{{- with .timing }}
{{ toYaml . }}
{{- end }}
{{- end }}
