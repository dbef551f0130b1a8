{{/* Names and labels. */}}
{{- define "vigil.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{/* Labels of every object; pods and workloads add vigil.selector (name, instance, component). */}}
{{- define "vigil.labels" -}}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Labels of objects without a component (ConfigMaps, Secrets, Services, PDBs, KEDA objects). */}}
{{- define "vigil.meta" -}}
{{ include "vigil.labels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "name" "worker") */}}
{{- define "vigil.selector" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Image of a component; GPU workers use the gpu tag. */}}
{{- define "vigil.image" -}}
{{- $img := .root.Values.image -}}
{{- $tag := $img.tag | default .root.Chart.AppVersion -}}
{{- if and (eq .name "worker") .root.Values.worker.gpu.enabled -}}{{ $tag = printf "%s%s" $tag $img.gpuSuffix }}{{- end -}}
{{ printf "%s:%s" $img.repository $tag }}
{{- end -}}

{{/* Where Kafka and Redis are. */}}
{{- define "vigil.kafkaBootstrap" -}}
{{- if and .Values.kafka.bundled (ne .Values.kafka.securityProtocol "PLAINTEXT") -}}
{{- fail "the bundled Kafka speaks PLAINTEXT only: set kafka.bundled=false to use SASL/TLS brokers" -}}
{{- end -}}
{{- if .Values.kafka.bundled -}}{{ include "vigil.fullname" . }}-kafka:9092
{{- else -}}{{ required "kafka.bootstrapServers is required when kafka.bundled is false" .Values.kafka.bootstrapServers }}{{- end -}}
{{- end -}}

{{- define "vigil.redisUrl" -}}
{{- if .Values.redis.bundled -}}redis://{{ include "vigil.fullname" . }}-redis:6379/0
{{- else -}}{{ required "redis.url is required when redis.bundled is false" .Values.redis.url }}{{- end -}}
{{- end -}}

{{- define "vigil.sasl" -}}{{ if hasPrefix "SASL" .Values.kafka.securityProtocol }}true{{ end }}{{- end -}}
{{- define "vigil.tls" -}}{{ if hasSuffix "SSL" .Values.kafka.securityProtocol }}true{{ end }}{{- end -}}

{{/* Secret names: an existing Secret, or the chart's own. */}}
{{- define "vigil.redisSecret" -}}{{ .Values.redis.existingSecret | default (printf "%s-redis" (include "vigil.fullname" .)) }}{{- end -}}
{{- define "vigil.redisSecretKey" -}}{{ if .Values.redis.existingSecret }}{{ .Values.redis.existingSecretKey }}{{ else }}redis_password{{ end }}{{- end -}}
{{- define "vigil.redisAuth" -}}{{ if or .Values.redis.bundled .Values.redis.password .Values.redis.existingSecret }}true{{ end }}{{- end -}}
{{- define "vigil.kafkaSecret" -}}{{ .Values.kafka.sasl.existingSecret | default (printf "%s-kafka" (include "vigil.fullname" .)) }}{{- end -}}
{{- define "vigil.kafkaSecretKey" -}}{{ if .Values.kafka.sasl.existingSecret }}{{ .Values.kafka.sasl.existingSecretKey }}{{ else }}kafka_password{{ end }}{{- end -}}
{{- define "vigil.tokensSecret" -}}{{ .Values.api.tokens.existingSecret | default (printf "%s-api-tokens" (include "vigil.fullname" .)) }}{{- end -}}
{{- define "vigil.cameraSecret" -}}{{ .Values.cameraCredentials.existingSecret | default (ternary (printf "%s-cameras" (include "vigil.fullname" .)) "" (not (empty .Values.cameraCredentials.values))) }}{{- end -}}

{{/* What each component talks to. */}}
{{- define "vigil.needsKafka" -}}{{ if has .name (list "topics" "ingest" "worker" "scorer" "evidence") }}true{{ end }}{{- end -}}
{{- define "vigil.needsRedis" -}}{{ if has .name (list "scorer" "evidence" "notify" "api") }}true{{ end }}{{- end -}}
