"""messagebird: the platform module, simulator and demo scenario (its manifest is mappings/messagebird.yaml)."""
