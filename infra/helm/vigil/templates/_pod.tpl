{{/*
The pod template of one Vigil component: (dict "root" $ "name" "scorer" "svc" .Values.scorer "args" (list "scorer")).
Secrets are files under /run/secrets/vigil (only those this component needs), never environment values.
*/}}
{{- define "vigil.pod" -}}
{{- $root := .root -}}{{- $name := .name -}}{{- $svc := .svc | default dict -}}
{{- $V := $root.Values -}}
{{- $kafka := include "vigil.needsKafka" . -}}{{- $redis := include "vigil.needsRedis" . -}}
{{- $gpu := and (eq $name "worker") $V.worker.gpu.enabled -}}
{{- $prefix := printf "VIGIL_%s_" (upper $name) -}}
metadata:
  labels:
    {{- include "vigil.labels" $root | nindent 4 }}
    {{- include "vigil.selector" (dict "root" $root "name" $name) | nindent 4 }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if ne $name "topics" }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $V.metricsPort | quote }}
    {{- end }}
    {{- with $V.podAnnotations }}{{ toYaml . | nindent 4 }}{{ end }}
spec:
  {{- with $V.imagePullSecrets }}
  imagePullSecrets: {{ toYaml . | nindent 4 }}
  {{- end }}
  securityContext: {{ toYaml $V.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ ternary 60 30 (eq $name "worker") }}
  {{- if eq $name "topics" }}
  restartPolicy: OnFailure
  {{- end }}
  {{- $nodeSelector := merge (dict) ($svc.nodeSelector | default dict) (ternary $V.worker.gpu.nodeSelector (dict) $gpu) }}
  {{- with $nodeSelector }}
  nodeSelector: {{ toYaml . | nindent 4 }}
  {{- end }}
  {{- $tolerations := concat ($svc.tolerations | default list) (ternary $V.worker.gpu.tolerations (list) $gpu) }}
  {{- with $tolerations }}
  tolerations: {{ toYaml . | nindent 4 }}
  {{- end }}
  {{- with $svc.affinity }}
  affinity: {{ toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ $name }}
      image: {{ include "vigil.image" (dict "root" $root "name" $name) }}
      imagePullPolicy: {{ $V.image.pullPolicy }}
      args: {{ toJson .args }}
      securityContext: {{ toYaml $V.containerSecurityContext | nindent 8 }}
      envFrom:
        - configMapRef: { name: {{ include "vigil.fullname" $root }}-env }
        {{- if and (eq $name "ingest") (include "vigil.cameraSecret" $root) }}
        - secretRef: { name: {{ include "vigil.cameraSecret" $root }} }   # the ${NAMES} of the cameras file
        {{- end }}
      env:
        - { name: VIGIL_CAMERAS_FILE, value: /config/cameras.yaml }
        {{- if ne $name "topics" }}
        - { name: {{ $prefix }}METRICS_PORT, value: {{ $V.metricsPort | quote }} }
        - { name: {{ $prefix }}METRICS_HOST, value: 0.0.0.0 }   # the default is loopback; probes need the pod IP
        - { name: {{ $prefix }}LOG_LEVEL, value: {{ $V.logging.level | quote }} }
        - { name: {{ $prefix }}LOG_JSON, value: {{ $V.logging.json | quote }} }
        {{- end }}
        {{- if $kafka }}
        - { name: VIGIL_KAFKA_BOOTSTRAP_SERVERS, value: {{ include "vigil.kafkaBootstrap" $root | quote }} }
        - { name: VIGIL_KAFKA_SECURITY_PROTOCOL, value: {{ $V.kafka.securityProtocol | quote }} }
        {{- if include "vigil.sasl" $root }}
        - { name: VIGIL_KAFKA_SASL_MECHANISM, value: {{ required "kafka.sasl.mechanism is required with SASL" $V.kafka.sasl.mechanism | quote }} }
        - { name: VIGIL_KAFKA_SASL_USERNAME, value: {{ required "kafka.sasl.username is required with SASL" $V.kafka.sasl.username | quote }} }
        - { name: VIGIL_KAFKA_SASL_PASSWORD_FILE, value: /run/secrets/vigil/kafka_password }
        {{- end }}
        {{- if and (include "vigil.tls" $root) $V.kafka.tls.existingSecret }}
        - { name: VIGIL_KAFKA_SSL_CAFILE, value: /run/secrets/vigil-kafka-tls/ca.crt }
        {{- end }}
        {{- end }}
        {{- if $redis }}
        - { name: VIGIL_REDIS_URL, value: {{ include "vigil.redisUrl" $root | quote }} }
        {{- with $V.redis.username }}
        - { name: VIGIL_REDIS_USERNAME, value: {{ . | quote }} }
        {{- end }}
        {{- if include "vigil.redisAuth" $root }}
        - { name: VIGIL_REDIS_PASSWORD_FILE, value: /run/secrets/vigil/redis_password }
        {{- end }}
        {{- end }}
        {{- if eq $name "worker" }}
        - { name: KERAS_BACKEND, value: {{ ternary "jax" "tensorflow" $gpu }} }
        {{- if $gpu }}
        - { name: XLA_PYTHON_CLIENT_PREALLOCATE, value: "false" }
        {{- end }}
        {{- end }}
        {{- if eq $name "scorer" }}
        - { name: VIGIL_SCORER_DATADIR, value: /var/lib/vigil/scorer }
        {{- end }}
        {{- if eq $name "api" }}
        - { name: VIGIL_API_HOST, value: 0.0.0.0 }
        - { name: VIGIL_API_PORT, value: {{ $V.api.port | quote }} }
        - { name: VIGIL_API_TOKENS_FILE, value: /run/secrets/vigil/api_tokens }
        {{- end }}
        {{- if eq $name "notify" }}
        - { name: VIGIL_NOTIFY_MQTT_ENABLED, value: {{ $V.notify.mqtt.enabled | quote }} }
        {{- if $V.notify.mqtt.enabled }}
        - { name: VIGIL_NOTIFY_MQTT_HOST, value: {{ required "notify.mqtt.host is required when notify.mqtt.enabled" $V.notify.mqtt.host | quote }} }
        - { name: VIGIL_NOTIFY_MQTT_PORT, value: {{ $V.notify.mqtt.port | quote }} }
        - { name: VIGIL_NOTIFY_MQTT_TLS, value: {{ $V.notify.mqtt.tls | quote }} }
        {{- with $V.notify.mqtt.username }}
        - { name: VIGIL_NOTIFY_MQTT_USERNAME, value: {{ . | quote }} }
        {{- end }}
        {{- end }}
        {{- end }}
        {{- range $k, $v := $svc.env }}
        - { name: {{ $k }}, value: {{ $v | quote }} }
        {{- end }}
      {{- if ne $name "topics" }}
      ports:
        - { name: metrics, containerPort: {{ $V.metricsPort }} }
        {{- if eq $name "api" }}
        - { name: http, containerPort: {{ $V.api.port }} }
        {{- end }}
      {{- if eq $name "worker" }}
      startupProbe:   # model load and first compiled step; liveness starts after it
        httpGet: { path: /healthz, port: metrics }
        periodSeconds: 5
        failureThreshold: {{ div $V.worker.startupSeconds 5 }}
      {{- end }}
      livenessProbe:   # the service loop's heartbeat (shared/telemetry.py)
        httpGet: { path: /healthz, port: metrics }
        initialDelaySeconds: {{ ternary 0 30 (eq $name "worker") }}
        periodSeconds: 15
        timeoutSeconds: 5
        failureThreshold: 4
      readinessProbe:   # connected: Kafka partitions assigned, Redis reachable (each service's ready())
        httpGet: { path: /readyz, port: metrics }
        periodSeconds: 10
        timeoutSeconds: 5
      {{- end }}
      resources:
        {{- $res := deepCopy ($svc.resources | default dict) }}
        {{- if $gpu }}
        {{- $_ := set $res "limits" (merge (dict $V.worker.gpu.resourceName $V.worker.gpu.count) ($res.limits | default dict)) }}
        {{- $_ := set $res "requests" (merge (dict $V.worker.gpu.resourceName $V.worker.gpu.count) ($res.requests | default dict)) }}
        {{- end }}
        {{- toYaml $res | nindent 8 }}
      volumeMounts:
        - { name: config, mountPath: /config, readOnly: true }
        - { name: tmp, mountPath: /tmp }
        {{- if or (and $kafka (include "vigil.sasl" $root)) (and $redis (include "vigil.redisAuth" $root)) (eq $name "api") }}
        - { name: secrets, mountPath: /run/secrets/vigil, readOnly: true }
        {{- end }}
        {{- if and $kafka (include "vigil.tls" $root) $V.kafka.tls.existingSecret }}
        - { name: kafka-tls, mountPath: /run/secrets/vigil-kafka-tls, readOnly: true }
        {{- end }}
        {{- if and (eq $name "notify") $V.notify.existingSecret }}
        - { name: notify-secrets, mountPath: /run/secrets/vigil-notify, readOnly: true }
        {{- end }}
        {{- if eq $name "scorer" }}
        - { name: data, mountPath: /var/lib/vigil }
        {{- end }}
  volumes:
    - name: config
      configMap: { name: {{ $V.cameras.existingConfigMap | default (printf "%s-cameras" (include "vigil.fullname" $root)) }} }
    - name: tmp
      emptyDir: {}
    {{- if or (and $kafka (include "vigil.sasl" $root)) (and $redis (include "vigil.redisAuth" $root)) (eq $name "api") }}
    - name: secrets   # only what this component needs
      projected:
        sources:
          {{- if and $kafka (include "vigil.sasl" $root) }}
          - secret: { name: {{ include "vigil.kafkaSecret" $root }}, items: [{ key: {{ include "vigil.kafkaSecretKey" $root }}, path: kafka_password }] }
          {{- end }}
          {{- if and $redis (include "vigil.redisAuth" $root) }}
          - secret: { name: {{ include "vigil.redisSecret" $root }}, items: [{ key: {{ include "vigil.redisSecretKey" $root }}, path: redis_password }] }
          {{- end }}
          {{- if eq $name "api" }}
          - secret: { name: {{ include "vigil.tokensSecret" $root }}, items: [{ key: api_tokens, path: api_tokens }] }
          {{- end }}
    {{- end }}
    {{- if and $kafka (include "vigil.tls" $root) $V.kafka.tls.existingSecret }}
    - name: kafka-tls
      secret: { secretName: {{ $V.kafka.tls.existingSecret }} }
    {{- end }}
    {{- if and (eq $name "notify") $V.notify.existingSecret }}
    - name: notify-secrets
      secret: { secretName: {{ $V.notify.existingSecret }} }
    {{- end }}
    {{- if eq $name "scorer" }}
    - name: data   # the scorer's local table cache; the camera states live in Kafka (changelog)
      emptyDir: {}
    {{- end }}
{{- end -}}
