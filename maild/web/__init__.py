"""The help desk's other channels: the web request form, and phone or fax requests typed in by operators."""
