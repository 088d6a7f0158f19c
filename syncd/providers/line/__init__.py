"""line: no Python of its own: the manifest mappings/line.yaml is the whole platform; this
folder holds only its simulator and demo scenario."""
