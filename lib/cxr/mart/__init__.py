"""Stage 5, the data mart: warehouse documents + lake renditions -> a COCO dataset on premises.

``filters`` and ``coco`` are pure (documents in, COCO dict and dataset card out); ``export``
wires them to the warehouse (optionally through an SSH tunnel) and the lake.
"""
