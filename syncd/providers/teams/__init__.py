"""Microsoft Teams: the platform module (Graph auth, chats, messages, subscriptions), simulator
and demo scenario (its manifest is mappings/teams.yaml)."""
