"""Stage 4: the warehouse ETL, 3NF rows -> one document per image in a MongoDB-wire store.

``documents`` holds the pure transform and the merge operations, ``state`` the watermark in the
``etl_state`` collection, ``etl`` the jobs (incremental load and rebuild) that wire them to the stores.
"""
