{{/*
The chart name, or nameOverride.
*/}}
{{- define "borobridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every resource: fullnameOverride, or the release name followed by the chart name unless the release
name already contains it. Truncated to 63 characters, the limit of a DNS label.
*/}}
{{- define "borobridge.fullname" -}}
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
Chart name and version, as in the helm.sh/chart label.
*/}}
{{- define "borobridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels every resource carries.
*/}}
{{- define "borobridge.labels" -}}
helm.sh/chart: {{ include "borobridge.chart" . }}
{{ include "borobridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: borobridge
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The labels that select the pod; they never change between releases of the chart.
*/}}
{{- define "borobridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "borobridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the pod runs as.
*/}}
{{- define "borobridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "borobridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest when a digest is set, repository:tag otherwise.
*/}}
{{- define "borobridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The configuration file: .Values.config with the bridge name defaulted to the release's full name.
*/}}
{{- define "borobridge.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if not $config.name }}
{{- $_ := set $config "name" (include "borobridge.fullname" .) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
The port of the HTTP listener (/livez, /readyz, /metrics) inside the pod.
*/}}
{{- define "borobridge.healthPort" -}}
{{- dig "health" "port" 8080 .Values.config }}
{{- end }}

{{/*
Fails with a sentence when existingSecret is used without a name.
*/}}
{{- define "borobridge.secretName" -}}
{{- required "existingSecret.name must name a Secret when existingSecret.env or existingSecret.mountAsFiles is set" .Values.existingSecret.name }}
{{- end }}

{{/*
Whether the webhook listener is on, and its port inside the pod.
*/}}
{{- define "borobridge.webhookEnabled" -}}
{{- if dig "webhook" "enabled" false .Values.config }}true{{ end }}
{{- end }}

{{- define "borobridge.webhookPort" -}}
{{- dig "webhook" "port" 8081 .Values.config }}
{{- end }}
