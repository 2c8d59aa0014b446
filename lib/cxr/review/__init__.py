"""Radiologists' review of predictions: the pure rules of a review (``rules``), storing and
reading reviews (``store``), and importing a reading study's VinDr-CXR CSV (``importer``).

A stage: it reads and writes the DB and reads the lake, and knows no other stage.
"""
