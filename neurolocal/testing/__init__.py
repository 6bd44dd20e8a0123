"""Test harnesses shipped with the package (not imported by it): `netns`, a Ray cluster
of network namespaces on one machine (docs/netns.md), used by tests/ and scripts/."""
