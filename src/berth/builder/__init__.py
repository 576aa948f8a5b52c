"""Building images from Dockerfiles: the parser, .dockerignore matching and the classic builder."""
