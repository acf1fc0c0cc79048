"""sigverify: verify Sigstore signatures of container images and sign the verdict."""
