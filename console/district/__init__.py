"""The district export: what a compound's console hands up to the district's data platform.

``records`` builds the versioned record (and drops the fields a site keeps to itself),
``cursor`` keeps in the console's own store how far the feed got and the district's API
tokens, ``reader`` reads the store in ingest order, ``mqtt_feed`` publishes to the
district broker and ``runner`` ties them into the thread ``gatepost console run`` starts
when ``[district]`` is configured.  docs/district.md is the contract the district reads.
"""
