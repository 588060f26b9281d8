{{/* The app's name: the Deployment, its labels and, by default, the registry's service name. */}}
{{- define "prestop.name" -}}
{{- default .Release.Name .Values.app.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "prestop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prestop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "prestop.labels" -}}
{{ include "prestop.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "prestop.sidecarMode" -}}
{{- if has .Values.mode (list "sidecar" "native-sidecar") }}true{{ end -}}
{{- end -}}

{{- define "prestop.tokenSecretName" -}}
{{- printf "%s-prestop-token" (include "prestop.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
--budget: the value, or what `prestop check` computes for the registry's default consumer
staleness (Nacos 35.5 s, Eureka 95 s) + a quiet window 6.9 s + shutdown 5 s + margin 2 s.
*/}}
{{- define "prestop.budget" -}}
{{- $budget := .Values.agent.budget -}}
{{- if kindIs "invalid" $budget -}}
{{- $budget = ternary 110 50 (eq .Values.registry.type "eureka") -}}
{{- else if lt (float64 $budget) 10.75 -}}
{{- fail (printf "agent.budget %v is below 10.75 s, the shortest budget `prestop drain` and `prestop serve` accept with the default timeouts (--http-timeout + --min-wait + --poll-interval + --shutdown-timeout + 0.5 s)" $budget) -}}
{{- end -}}
{{- $budget -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the grace period starts before the preStop hook, so it must
hold the whole budget plus 5 s for kubelet's SIGTERM and the app's exit (agent/check.py
GRACE_MARGIN). An explicit value that is too short fails the rendering rather than letting
kubelet kill the hook mid-drain.
*/}}
{{- define "prestop.grace" -}}
{{- $budget := include "prestop.budget" . | float64 -}}
{{- $need := add (ceil $budget | int) 5 -}}
{{- $grace := .Values.agent.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $grace -}}
{{- $need -}}
{{- else if lt (float64 $grace) (addf $budget 5) -}}
{{- fail (printf "agent.terminationGracePeriodSeconds %v is shorter than agent.budget %v + 5 s: kubelet would kill the preStop hook before it ends; set it to at least %d or leave it empty (computed)" $grace $budget $need) -}}
{{- else -}}
{{- $grace -}}
{{- end -}}
{{- end -}}

{{/*
The sidecar token, computed once per rendering (the Secret and the hook's header must carry
the same value): token.value, else the existing Secret's (upgrades keep it), else random.
*/}}
{{- define "prestop.token" -}}
{{- if not (hasKey .Values.token "_resolved") -}}
{{- $token := .Values.token.value -}}
{{- if not $token -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "prestop.tokenSecretName" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data "token") -}}
{{- $token = index $existing.data "token" | b64dec -}}
{{- else -}}
{{- $token = randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values.token "_resolved" $token -}}
{{- end -}}
{{- index .Values.token "_resolved" -}}
{{- end -}}

{{/*
The env the app and the agent share: the instance (POD_IP, service, port) and the registry.
The agent reads the app's own variables, so in exec modes one list serves both.
*/}}
{{- define "prestop.registryEnv" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: SPRING_APPLICATION_NAME
  value: {{ default (include "prestop.name" .) .Values.app.service | quote }}
- name: SERVER_PORT
  value: {{ .Values.app.port | quote }}
{{- if eq .Values.registry.type "nacos" }}
{{- with .Values.registry.nacos }}
- name: NACOS_SERVER_ADDR
  value: {{ required "registry.nacos.serverAddr is required with registry.type nacos (host:port of the Nacos servers)" .serverAddr | quote }}
{{- with .namespace }}
- name: SPRING_CLOUD_NACOS_DISCOVERY_NAMESPACE
  value: {{ . | quote }}
{{- end }}
{{- with .group }}
- name: SPRING_CLOUD_NACOS_DISCOVERY_GROUP
  value: {{ . | quote }}
{{- end }}
{{- with .credentialsSecret }}
- name: NACOS_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: username
- name: NACOS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: password
{{- end }}
{{- end }}
{{- else }}
{{- with .Values.registry.eureka }}
# http://user:password@eureka-0.eureka.infra:8761/eureka/,http://...eureka-1...
- name: EUREKA_CLIENT_SERVICEURL_DEFAULTZONE
  valueFrom:
    secretKeyRef:
      name: {{ required "registry.eureka.serviceUrlSecret is required with registry.type eureka" .serviceUrlSecret }}
      key: {{ .serviceUrlKey | default "defaultZone" }}
{{- end }}
{{- end }}
{{- end -}}

{{/* What the agent reads besides the registry env: budget and grace, for drain, serve and check. */}}
{{- define "prestop.agentEnv" -}}
# `prestop check` in the container then plans with the pod's real numbers.
- name: PRESTOP_BUDGET
  value: {{ include "prestop.budget" . | quote }}
- name: PRESTOP_GRACE
  value: {{ include "prestop.grace" . | quote }}
{{- with .Values.agent.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The `prestop serve` container, for mode sidecar (a container) and native-sidecar (an init container). */}}
{{- define "prestop.sidecar" -}}
- name: prestop
  image: {{ .Values.agent.sidecarImage }}
  imagePullPolicy: {{ .Values.agent.imagePullPolicy }}
  {{- if eq .Values.mode "native-sidecar" }}
  restartPolicy: Always  # native sidecar: started first, stopped after the app
  {{- end }}
  # The sidecar image's ENTRYPOINT is `prestop` (container/Dockerfile.sidecar).
  args:
    {{- concat (list "serve" "--listen" (printf "0.0.0.0:%v" .Values.agent.port) "--budget" (include "prestop.budget" .)) .Values.agent.args | toYaml | nindent 4 }}
  ports:
    - name: prestop
      containerPort: {{ .Values.agent.port }}
  env:
    - name: PRESTOP_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ include "prestop.tokenSecretName" . }}
          key: token
    # The same instance and registry settings as the app.
    {{- include "prestop.registryEnv" . | nindent 4 }}
    {{- include "prestop.agentEnv" . | nindent 4 }}
    # Who holds the instance out (start-up hold, `prestop down`, a drain), kept across a
    # restart of this container so it repairs only its own leftovers (README: the start-up hold).
    - name: PRESTOP_STATE_DIR
      value: /run/prestop
    {{- if .Values.agent.startupHold.enabled }}
    - name: PRESTOP_STARTUP_HOLD
      value: "on"
    {{- with .Values.agent.startupHold.readyUrl }}
    - name: PRESTOP_READY_URL
      value: {{ . | quote }}
    {{- end }}
    {{- if .Values.agent.startupHold.delay }}
    - name: PRESTOP_STARTUP_DELAY
      value: {{ .Values.agent.startupHold.delay | quote }}
    {{- end }}
    {{- end }}
  volumeMounts:
    - name: prestop-state
      mountPath: /run/prestop
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ .Values.agent.port }}
    periodSeconds: 10
  resources:
    {{- toYaml .Values.agent.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.agent.securityContext | nindent 4 }}
{{- end -}}
