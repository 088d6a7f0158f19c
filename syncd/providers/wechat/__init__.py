"""wechat: WeChat Official Account messaging. The manifest mappings/wechat.yaml declares the
requests, errors, events and mappings; ``connector.py`` keeps what data cannot say (the access
token exchange, the sorted-SHA-1 signatures, safe-mode AES and the XML bodies, in ``wire.py``)."""
