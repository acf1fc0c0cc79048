#!/usr/bin/env bash
# Check a sigverify verdict with openssl and jq only (nothing from sigverify).
# Usage: examples/verify_verdict.sh VERDICT.json KEY.pem
#   VERDICT.json: the response of POST /v1/verify; KEY.pem: a key from GET /v1/keys, pinned.
# Prints the statement's subject and result when the signature verifies; exits 1 otherwise.
set -euo pipefail
verdict="$1"
key="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
type="$(jq -r '.signedVerdict.payloadType' "$verdict")"
jq -r '.signedVerdict.payload' "$verdict" | base64 -d > "$work/payload"
jq -r '.signedVerdict.signatures[0].sig' "$verdict" | base64 -d > "$work/sig"
# DSSE pre-authentication encoding: "DSSEv1 <len type> <type> <len payload> <payload>"
printf 'DSSEv1 %d %s %d ' "${#type}" "$type" "$(wc -c < "$work/payload")" > "$work/pae"
cat "$work/payload" >> "$work/pae"
openssl dgst -sha256 -verify "$key" -signature "$work/sig" "$work/pae" >/dev/null \
  || { echo "verdict signature does NOT verify" >&2; exit 1; }
jq -r '"subject: \(.subject[0].name)@sha256:\(.subject[0].digest.sha256)",
       "result:  \(.predicate.verificationResult)"' "$work/payload"
