"""mailgun: Mailgun email threads. The manifest mappings/mailgun.yaml says the platform;
``connector.py`` reads a route's form (URL-encoded or multipart) into the event documents'
shape and threads it."""
