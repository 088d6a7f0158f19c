"""messenger: the platform module, simulator and demo scenario (its manifest is mappings/messenger.yaml)."""
