"""A local Sigstore instance for tests, speaking the real protocols with real cryptography.

- `ca`: a Fulcio-style CA (root, intermediate, short-lived leaves with Fulcio extensions and
  an embedded SCT from its CT log).
- `log`, `server`: a Rekor v1 log (hashedrekord and dsse entries, RFC 6962 tree, SETs, signed
  checkpoints) and its REST API on 127.0.0.1, with request counts and failure switches.
- `trust`: trusted_root.json describing them.
- `artifacts`, `signer`: what cosign writes (layers, annotations, bundles, referrers), into a
  real registry with `RegistrySigner`.
- `instance`: `LocalSigstore`, all of the above running; `fixtures`: the pytest fixture.
- `offline`: the same without servers, for the verification core's unit tests.
"""
