"""twilio: Twilio Programmable Messaging (SMS/MMS). The manifest mappings/twilio.yaml says the
platform; ``connector.py`` only walks a chat's two directions and looks up the number."""
