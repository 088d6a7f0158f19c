"""get.chat Team Inbox: syncd as the Inbox's external plugin (``plugin.py``), messages through
the Integration API (``mappings/getchat.yaml``), a simulator of the Inbox (``sim.py``) and the
demo scenario (``demo.py``)."""
