{{/* Names, labels and the computed config. */}}

{{- define "havoc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "havoc.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "havoc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "havoc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "havoc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "havoc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "havoc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "havoc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "havoc.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "havoc.policyConfigMap" -}}
{{- default (printf "%s-policies" (include "havoc.fullname" .)) .Values.existingPolicyConfigMap -}}
{{- end -}}

{{- define "havoc.job" -}}
{{- default (include "havoc.fullname" .) .Values.prometheusRule.job -}}
{{- end -}}

{{/*
The HavocConfig spec: the chart's computed defaults, with .Values.config merged over them
(values win). Booleans and other defaults a user may want to turn off live in values.yaml,
where Helm's own merge handles `false` and `null`; computed here are only the strings that
depend on the release.
*/}}
{{- define "havoc.configSpec" -}}
{{- $server := dict "listen" (printf "0.0.0.0:%v" .Values.port) -}}
{{- if .Values.apiToken.existingSecret -}}
{{- $_ := set $server "token" (dict "env" "HAVOC_API_TOKEN") -}}
{{- end -}}
{{- $computed := dict
  "policies" "/etc/havoc/policies"
  "server" $server
  "leaderElection" (dict "namespace" .Release.Namespace "lease" (include "havoc.fullname" .))
-}}
{{- $spec := mustMergeOverwrite $computed (deepCopy (default (dict) .Values.config)) -}}
{{- /* YAML 1.1, which Helm reads values with, turns an unquoted `on:` key into `true`:
       notify.on gets its name back. */ -}}
{{- with $spec.notify -}}
{{- if hasKey . "true" -}}
{{- $_ := set . "on" (get . "true") -}}
{{- $_ := unset . "true" -}}
{{- end -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}

{{/* The pod's affinity: the podAntiAffinity preset, with .Values.affinity merged over it. */}}
{{- define "havoc.affinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "havoc.selectorLabels" . | fromYaml)) -}}
{{- $aff := dict -}}
{{- if eq .Values.podAntiAffinity "soft" -}}
{{- $_ := set $aff "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- else if eq .Values.podAntiAffinity "hard" -}}
{{- $_ := set $aff "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- end -}}
{{- $aff = mustMergeOverwrite $aff (deepCopy .Values.affinity) -}}
{{- if $aff -}}
{{- toYaml $aff -}}
{{- end -}}
{{- end -}}
