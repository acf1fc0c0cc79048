{{/*
The chart's name, truncated to 63 characters (a DNS label).
*/}}
{{- define "sigverify.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: the release name, with the chart's name appended unless it already
contains it.
*/}}
{{- define "sigverify.fullname" -}}
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

{{- define "sigverify.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. Selector labels add a component, so that the service's pods and the
in-chart Redis never select each other.
*/}}
{{- define "sigverify.labels" -}}
helm.sh/chart: {{ include "sigverify.chart" . }}
app.kubernetes.io/name: {{ include "sigverify.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sigverify
{{- end }}

{{- define "sigverify.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sigverify.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "sigverify.redis.fullname" -}}
{{- printf "%s-redis" (include "sigverify.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sigverify.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sigverify.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/*
The Secret holding the verdict-signing key: signingKey.existingSecret, or the one the chart
generates (templates/signing-key.yaml creates it under this name and looks it up by it).
*/}}
{{- define "sigverify.signingKey.secretName" -}}
{{- if .Values.signingKey.existingSecret }}
{{- .Values.signingKey.existingSecret }}
{{- else }}
{{- printf "%s-signing-key" (include "sigverify.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sigverify.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sigverify.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference. With a digest, what runs is fixed: repository@digest, or
repository:tag@digest when a tag is given explicitly (the tag is then only a label for people).
Without: repository:tag, the tag defaulting to `default`.
Call with (dict "image" .Values.image "default" .Chart.AppVersion).
*/}}
{{- define "sigverify.imageRef" -}}
{{- if and .image.digest .image.tag }}
{{- printf "%s:%s@%s" .image.repository .image.tag .image.digest }}
{{- else if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .default .image.tag) }}
{{- end }}
{{- end }}

{{/*
A setting's value as the text of its environment variable: lists are comma-joined, whole
numbers are printed as integers (YAML numbers reach templates as float64, and 4194304 would
otherwise print as 4.194304e+06).
*/}}
{{- define "sigverify.settingValue" -}}
{{- if kindIs "slice" . }}
{{- join "," . }}
{{- else if kindIs "float64" . }}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "invalid" . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
The port gunicorn listens on inside the pod (SIGVERIFY_BIND), and the image's EXPOSE.
*/}}
{{- define "sigverify.containerPort" -}}8080{{- end }}

{{/*
Where the pods mount what the chart gives them. The SIGVERIFY_* file settings point here.
*/}}
{{- define "sigverify.paths.dataDir" -}}/var/lib/sigverify{{- end }}
{{- define "sigverify.paths.signingKey" -}}/etc/sigverify/signing-key/signing-key.pem{{- end }}
{{- define "sigverify.paths.retiredKeys" -}}/etc/sigverify/retired-keys{{- end }}
{{- define "sigverify.paths.dockerConfig" -}}/etc/sigverify/registry-credentials/config.json{{- end }}
{{- define "sigverify.paths.trustRoot" -}}/etc/sigverify/trust-root/trusted_root.json{{- end }}
{{- define "sigverify.paths.extraTrustRoots" -}}/etc/sigverify/trust-roots{{- end }}
{{- define "sigverify.paths.policies" -}}/etc/sigverify/policies/policies.yaml{{- end }}
{{- define "sigverify.paths.apiTokens" -}}/etc/sigverify/api-tokens{{- end }}
{{- define "sigverify.paths.tlsCert" -}}/etc/sigverify/tls-cert/tls.crt{{- end }}
{{- define "sigverify.paths.tlsKey" -}}/etc/sigverify/tls-key/tls.key{{- end }}
{{- define "sigverify.paths.admissionClientCA" -}}/etc/sigverify/admission-client-ca/ca.crt{{- end }}
{{- define "sigverify.paths.admissionToken" -}}/etc/sigverify/admission-token/tokens{{- end }}

{{/*
Refuse contradictory values early, with the value named.
*/}}
{{- define "sigverify.validate" -}}
{{- if and .Values.redis.internal.enabled (or .Values.redis.external.url .Values.redis.external.existingSecret) }}
{{- fail "redis: set either redis.internal.enabled or redis.external (url or existingSecret), not both" }}
{{- end }}
{{- if and .Values.redis.external.url .Values.redis.external.existingSecret }}
{{- fail "redis.external: set url or existingSecret, not both" }}
{{- end }}
{{- range $name := list "tuf_url" "tuf_root_file" }}
{{- if and (index $.Values.config $name) $.Values.trustRoot.existingConfigMap }}
{{- fail (printf "config.%s and trustRoot.existingConfigMap: set one trust-root source, not both" $name) }}
{{- end }}
{{- if and (index $.Values.config $name) (eq (toString (index $.Values.config "tuf_refresh")) "false") }}
{{- fail (printf "config.%s is set but config.tuf_refresh is false: TUF is off" $name) }}
{{- end }}
{{- end }}
{{- if and .Values.admissionWebhook.enabled (not .Values.admissionWebhook.caBundle) (not (hasKey .Values.admissionWebhook.annotations "cert-manager.io/inject-ca-from")) }}
{{- fail "admissionWebhook.enabled needs admissionWebhook.caBundle (or a cert-manager.io/inject-ca-from annotation): the API server only calls webhooks over TLS" }}
{{- end }}
{{- if and .Values.admissionWebhook.enabled (not .Values.admissionWebhook.tls.existingSecret) }}
{{- fail "admissionWebhook.enabled needs admissionWebhook.tls.existingSecret: a kubernetes.io/tls Secret the pods serve HTTPS with" }}
{{- end }}
{{- if and .Values.admissionWebhook.mutate.enabled (not .Values.admissionWebhook.enabled) }}
{{- fail "admissionWebhook.mutate.enabled needs admissionWebhook.enabled: pinning goes with the validating webhook, which denies what does not verify" }}
{{- end }}
{{- $auth := .Values.admissionWebhook.clientAuth }}
{{- if and (or $auth.certificate.caConfigMap $auth.token.existingSecret) (not .Values.admissionWebhook.enabled) }}
{{- fail "admissionWebhook.clientAuth needs admissionWebhook.enabled: it is what the API server presents to the webhook" }}
{{- end }}
{{- if and $auth.certificate.names (not $auth.certificate.caConfigMap) }}
{{- fail "admissionWebhook.clientAuth.certificate.names needs admissionWebhook.clientAuth.certificate.caConfigMap: the CA that signs those certificates" }}
{{- end }}
{{- $rules := .Values.admissionPolicies | default dict }}
{{- if and .Values.admissionWebhook.enabled (not .Values.config.admission_policy) (not $rules) }}
{{- fail "admissionWebhook.enabled needs config.admission_policy (the name of one of `policies`) or admissionPolicies (a policy per namespace)" }}
{{- end }}
{{- if and $rules (not .Values.policies) }}
{{- fail "admissionPolicies needs `policies`: it names them" }}
{{- end }}
{{- $names := list }}
{{- range .Values.policies }}{{ $names = append $names .name }}{{ end }}
{{- with $rules.default }}
{{- if not (has . $names) }}
{{- fail (printf "admissionPolicies.default=%s is not the name of one of `policies`" .) }}
{{- end }}
{{- end }}
{{- range $namespace, $name := ($rules.namespaces | default dict) }}
{{- if not (has $name $names) }}
{{- fail (printf "admissionPolicies.namespaces.%s=%s is not the name of one of `policies`" $namespace $name) }}
{{- end }}
{{- end }}
{{- if .Values.admissionWebhook.enabled }}
{{- $budget := .Values.config.admission_timeout | default 8 }}
{{- if le (float64 .Values.admissionWebhook.timeoutSeconds) (float64 $budget) }}
{{- fail (printf "admissionWebhook.timeoutSeconds=%v must be above config.admission_timeout=%v (the service's time budget, default 8): otherwise the API server gives up before sigverify answers" .Values.admissionWebhook.timeoutSeconds $budget) }}
{{- end }}
{{- end }}
{{- $deadline := .Values.config.request_timeout | default 30 }}
{{- $stop := add (int .Values.preStopSleepSeconds) (ceil (float64 $deadline)) 5 }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $stop) }}
{{- fail (printf "terminationGracePeriodSeconds=%v must be at least preStopSleepSeconds + config.request_timeout + 5 = %v: a request in flight at SIGTERM gets its whole deadline to be answered" .Values.terminationGracePeriodSeconds $stop) }}
{{- end }}
{{- with .Values.config.admission_policy }}
{{- $name := . }}
{{- $found := false }}
{{- range $.Values.policies }}{{ if eq .name $name }}{{ $found = true }}{{ end }}{{ end }}
{{- if not $found }}
{{- fail (printf "config.admission_policy=%s is not the name of one of `policies`" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The container's variables beyond the ConfigMap: those that come from Secrets, telemetry and
extraEnv. Empty when there are none.
*/}}
{{- define "sigverify.env" -}}
{{- if and .Values.redis.internal.enabled .Values.redis.internal.auth.existingSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.internal.auth.existingSecret }}
      key: {{ .Values.redis.internal.auth.key }}
# $(REDIS_PASSWORD) is expanded by the kubelet from the variable above.
- name: SIGVERIFY_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "sigverify.redis.fullname" .) | quote }}
{{- else if .Values.redis.external.existingSecret }}
- name: SIGVERIFY_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.existingSecret }}
      key: {{ .Values.redis.external.key }}
{{- end }}
{{- with .Values.telemetry.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: sigverify
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
"true" while the default trust root is refreshed through TUF: no fixed root from a ConfigMap,
and config.tuf_refresh not false (the service's default is on). The TUF egress rule follows it.
*/}}
{{- define "sigverify.tufRefresh" -}}
{{- if and (not .Values.trustRoot.existingConfigMap) (ne (toString (index .Values.config "tuf_refresh")) "false") -}}
true
{{- end -}}
{{- end }}

{{/*
A NetworkPolicy egress rule from {ipBlocks, ports}: TCP to those ports, at those ipBlocks, or
at any address when there are none.
*/}}
{{- define "sigverify.egressRule" -}}
- ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .ipBlocks }}
  to:
    {{- range . }}
    - ipBlock:
        {{- toYaml . | nindent 8 }}
    {{- end }}
  {{- end }}
{{- end }}
