"""Stages 1-2: decode and validate an upload, de-identify DICOM, store it with its prediction.

``decode`` turns bytes into one normalized array (PNG/JPEG via Pillow, DICOM via pydicom),
``validate`` holds the guards (size, pixels, names, formats), ``deid`` the DICOM PS3.15
basic-profile de-identification, ``pipeline`` the store sequence (lake first, then one DB
transaction) and batch ingest, ``gc`` the sweep of lake objects that no row references.
Nothing here imports torch.
"""
