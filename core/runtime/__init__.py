"""The container runtime: Docker, compose, Dockerfiles, the image policy, cgroups and the firewall."""
