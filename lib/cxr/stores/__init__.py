"""Adapters for the three stores: the metadata DB, the lake and the warehouse.

Each is a small module behind a plain interface and is chosen by configuration:
``db`` (SQLAlchemy: SQLite or MySQL/MariaDB), ``lake`` (local directory or S3 through
boto3) and ``warehouse`` (pymongo against embedded SecantusDB or any MongoDB-wire server).
"""
