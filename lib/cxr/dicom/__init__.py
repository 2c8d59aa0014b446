"""DICOM adapters: de-identification and keyed pseudonyms (``deid``).

Identified DICOM data exists only in memory, on the way in (de-identification) and, later, on
the way back to the PACS; everything that touches disk is de-identified.
"""
