"""Deployment artifacts: the Dockerfile and the Helm chart."""
