"""Stage 4: the warehouse ETL, 3NF rows -> one document per image in a MongoDB-wire store.

``documents`` holds the pure transform and the merge operations, ``etl`` the jobs (incremental
load and rebuild) that wire them to the stores, ``remote_run`` the same notebook run on the SSH
host. The watermark they keep lives with the stores (:mod:`cxr.stores.watermark`): the backup's
purge guard and the mart read it too.
"""
