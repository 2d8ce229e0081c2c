{{/* The release's full name: the release name, with the chart's name unless it already holds it. */}}
{{- define "cdc.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries; the selector ones stay fixed across upgrades. */}}
{{- define "cdc.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cdc.labels" -}}
{{ include "cdc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cdc.serviceAccountName" -}}
{{- default (include "cdc.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "cdc.operatorServiceAccountName" -}}
{{- default (printf "%s-operator" (include "cdc.fullname" .)) .Values.jobs.serviceAccount.name -}}
{{- end -}}

{{- define "cdc.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "cdc.kclImage" -}}
{{- printf "%s:%s" .Values.kclImage.repository (default .Chart.AppVersion .Values.kclImage.tag) -}}
{{- end -}}

{{- define "cdc.leaseTable" -}}
{{- default (printf "%s-cdc-leases" .Values.source.table) .Values.leaseTable -}}
{{- end -}}

{{/* The container's locked-down security context (the image runs as 10001, writes only /tmp). */}}
{{- define "cdc.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "cdc.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment beyond the ConfigMap: the worker id, and the basic-auth Secret when used. */}}
{{- define "cdc.env" -}}
- name: CDC_WORKER_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if eq .Values.opensearch.auth "basic" }}
- name: CDC_OPENSEARCH_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "opensearch.basicAuthSecret is required with opensearch.auth=basic" .Values.opensearch.basicAuthSecret }}
      key: username
- name: CDC_OPENSEARCH_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.opensearch.basicAuthSecret }}
      key: password
{{- end }}
{{- end -}}
