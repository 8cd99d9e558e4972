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

{{/*
Whether the bridge delivers to Kafka: a config.kafka section with bootstrap servers, or the servers from an
environment variable. Only then do replicas share the streams (and fence each other) through Kafka; without
Kafka the cursor is a local file and exactly one replica may run.
*/}}
{{- define "borobridge.kafkaEnabled" -}}
{{- $variable := "BOROBRIDGE_KAFKA__BOOTSTRAP_SERVERS" }}
{{- $fromEnv := hasKey .Values.existingSecret.env $variable }}
{{- range .Values.extraEnv }}{{ if eq .name $variable }}{{ $fromEnv = true }}{{ end }}{{ end }}
{{- if or (dig "kafka" "bootstrap_servers" "" .Values.config) $fromEnv }}true{{ end }}
{{- end }}

{{/*
The number of replicas; fails with a sentence when several would share one local state file.
*/}}
{{- define "borobridge.replicas" -}}
{{- $count := int .Values.replicaCount }}
{{- if and (gt $count 1) (not (include "borobridge.kafkaEnabled" .)) }}
{{- fail (printf "replicaCount is %d, but without config.kafka the bridge keeps its cursor in a local file (config.state.path), so exactly one replica may run: set replicaCount to 1, or configure config.kafka" $count) }}
{{- end }}
{{- $count }}
{{- end }}

{{/*
Whether to create the PodDisruptionBudget: as podDisruptionBudget.enabled says, or, when it is unset, with
more than one replica.
*/}}
{{- define "borobridge.budgetEnabled" -}}
{{- $enabled := .Values.podDisruptionBudget.enabled }}
{{- if kindIs "invalid" $enabled }}{{ $enabled = gt (int .Values.replicaCount) 1 }}{{ end }}
{{- if $enabled }}true{{ end }}
{{- end }}

{{/*
The topologySpreadConstraints value, each constraint selecting this release's pods unless it names its own.
*/}}
{{- define "borobridge.topologySpreadConstraints" -}}
{{- $selector := dict "matchLabels" (include "borobridge.selectorLabels" . | fromYaml) }}
{{- $constraints := list }}
{{- range .Values.topologySpreadConstraints }}
{{- $constraints = append $constraints (merge (deepCopy .) (dict "labelSelector" $selector)) }}
{{- end }}
{{- toYaml $constraints }}
{{- end }}

{{/*
How many pods run and what that means, for NOTES.txt.
*/}}
{{- define "borobridge.replicaNote" -}}
{{- $count := int (include "borobridge.replicas" .) }}
{{- $topic := dig "kafka" "topics" "checkpoints" "_borobridge.checkpoints" .Values.config }}
{{- if not (include "borobridge.kafkaEnabled" .) -}}
one pod (no Kafka: the cursor is in a local file, so an upgrade stops it before starting the next).
{{- else if eq $count 1 -}}
one pod (an upgrade starts the new pod first; it takes the streams over within seconds).
{{- else -}}
{{ $count }} pods sharing the streams through a Kafka consumer group: each shard (a partition of
{{ $topic }}) is polled by one pod at a time, and the shards of a pod that goes move to the others within
about the group's session timeout (10 s).
{{- if .Values.kafkaTopics.enabled }}
{{- $partitions := int .Values.kafkaTopics.topics.checkpoints.partitions }}
{{- if gt $count $partitions }}
{{ $topic }} has {{ $partitions }} partition{{ if gt $partitions 1 }}s{{ end }} (kafkaTopics.topics.checkpoints.partitions): {{ sub $count $partitions }} of the pods stand by
to take over and poll nothing.
{{- end }}
{{- else }}
Pods beyond the number of partitions of {{ $topic }} stand by ({{ dig "kafka" "topics" "partitions" 6 .Values.config }} when the bridge creates
the topic: config.kafka.topics.partitions).
{{- end }}
{{- end }}
{{- end }}
