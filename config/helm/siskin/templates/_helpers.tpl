{{/*
Chart name, truncated to the 63 characters a label value may hold.
*/}}
{{- define "siskin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name of the operator's objects. The release name alone when it already
contains the chart name ("siskin" for `helm install siskin ...`).
*/}}
{{- define "siskin.fullname" -}}
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
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "siskin.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels common to every object of the release.
*/}}
{{- define "siskin.commonLabels" -}}
helm.sh/chart: {{ include "siskin.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: siskin
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/*
The operator's labels and selector labels.
*/}}
{{- define "siskin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "siskin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "siskin.labels" -}}
{{ include "siskin.selectorLabels" . }}
app.kubernetes.io/component: operator
{{ include "siskin.commonLabels" . }}
{{- end }}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "siskin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "siskin.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The router's names, labels and ServiceAccount.
*/}}
{{- define "siskin.router.name" -}}
{{- printf "%s-router" (include "siskin.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "siskin.router.fullname" -}}
{{- printf "%s-router" (include "siskin.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "siskin.router.selectorLabels" -}}
app.kubernetes.io/name: {{ include "siskin.router.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "siskin.router.labels" -}}
{{ include "siskin.router.selectorLabels" . }}
app.kubernetes.io/component: router
{{ include "siskin.commonLabels" . }}
{{- end }}

{{- define "siskin.router.serviceAccountName" -}}
{{- if .Values.router.serviceAccount.create }}
{{- default (include "siskin.router.fullname" .) .Values.router.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.router.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The one image, holding both `siskin` and `siskin-router`; the tag defaults to appVersion.
*/}}
{{- define "siskin.image" -}}
{{- printf "%s:%v" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The router Service the operator sends Canary traffic to and reads /stats from:
`routerService` when set, else this release's router.
*/}}
{{- define "siskin.routerService" -}}
{{- if .Values.routerService }}
{{- .Values.routerService }}
{{- else }}
{{- printf "%s/%s" .Release.Namespace (include "siskin.router.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Checks on values that would otherwise fail at run time.
*/}}
{{- define "siskin.validate" -}}
{{- if not (has .Values.apiGroup (list "siskin.dev" "flagger.app")) }}
{{- fail (printf "apiGroup must be siskin.dev or flagger.app, got %q" .Values.apiGroup) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: two operators would both drive every Canary" }}
{{- end }}
{{- if and (eq .Values.meshProvider "builtin") (not .Values.router.enabled) (not .Values.routerService) }}
{{- fail "meshProvider builtin needs the router: set router.enabled=true, or routerService to an existing router's <namespace>/<name>" }}
{{- end }}
{{- end }}
