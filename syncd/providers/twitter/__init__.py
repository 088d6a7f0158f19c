"""twitter (alias x): X Direct Messages. The manifest mappings/twitter.yaml is the platform (OAuth
1.0a signing is the kit's ``oauth1`` auth); ``connector.py`` keeps what data cannot say: the
conversation id of Account Activity events and the participant a 1:1 message goes to."""
