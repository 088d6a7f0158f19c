"""viber: no Python of its own: the manifest mappings/viber.yaml is the whole platform; this
folder holds only its simulator and demo scenario."""
